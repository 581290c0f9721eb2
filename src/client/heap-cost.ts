/**
 * What the values of one frame from the server may cost the client's heap, whatever its
 * encoding. permessage-deflate (every client offers it) inflates 50 KB into 24 MB of `{},{},…`,
 * which JSON.parse made 8 M objects of 64 bytes: 511 MB of heap (test/client-hostile-values).
 * maxFrameBytes bounds the text, not what it becomes: this bounds that.
 */

/**
 * What a decoded value costs the heap beyond its bytes, about (V8, 64-bit): a slot in its
 * container, or a header (a string's, a heap number's), and for an array or map 48 more (an
 * empty `{}` with its slot is 64, as measured). A string's characters are not counted: they are
 * bytes of the frame, bounded by maxFrameBytes.
 */
export const VALUE_COST = 16;
export const CONTAINER_COST = 48;

/**
 * The most the values of one frame may cost by default: 64 MiB. A server's frames fit half its
 * `ring_bytes` (under 2 MiB by default), and no JSON text counts more than MAX_JSON_COST_PER_CHAR
 * per character: nothing a server of the default ring_bytes sends can reach it, or is even scanned.
 */
export const MAX_FRAME_HEAP_BYTES = 64 * 1024 * 1024;

/**
 * The most a character of JSON text can count: `[[[…]]]`, a container every two characters
 * (`[{},{},…]` counts 80 every three). Text shorter than the budget over this is never scanned.
 */
const MAX_JSON_COST_PER_CHAR = (CONTAINER_COST + VALUE_COST) / 2;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/**
 * Throws (RangeError) if what JSON.parse would build of `text` costs more than `budget`, before
 * it is built. Counted outside strings: each `{` or `[` is a container, each `,` or `:` one value
 * more (a container's first item is not counted: a container costs four times as much as the
 * item, and VALUE_COST is twice what a number's slot takes), and each string but a key one
 * more (its header). Text that is not JSON may be miscounted: JSON.parse refuses it.
 * Text too short to reach the budget (every ordinary frame) costs one comparison.
 */
export function checkJsonCost(text: string, budget: number): void {
  if (text.length * MAX_JSON_COST_PER_CHAR <= budget) return;
  let cost = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = closingQuote(text, i);
      if (i < 0) return;
      // A value's header (a key is shared by every object of its shape): 1 M strings of four characters took 32 MB.
      if (text.charCodeAt(i + 1) !== COLON && (cost += VALUE_COST) > budget) throw overBudget(text.length, budget);
    } else if (c === 0x7b || c === 0x5b) {
      if ((cost += CONTAINER_COST + VALUE_COST) > budget) throw overBudget(text.length, budget);
    } else if (c === 0x2c || c === COLON) {
      if ((cost += VALUE_COST) > budget) throw overBudget(text.length, budget);
    }
  }
}

/** The index of the quote that closes the string opened at `open` (-1: none), found natively: payloads are mostly strings. */
function closingQuote(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at !== -1) {
    let escapes = 0;
    while (text.charCodeAt(at - 1 - escapes) === BACKSLASH) escapes++;
    if (escapes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}

const overBudget = (chars: number, budget: number): RangeError => new RangeError(`a JSON frame of ${chars} characters holds more values than maxFrameHeapBytes (${budget}) allows`);
