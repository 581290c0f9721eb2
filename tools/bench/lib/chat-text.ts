// Chat-like payloads for the codec benchmark: text with the repetition real chat has (a
// vocabulary drawn with a Zipf-like skew, names and a few numbers and links), not random bytes
// (which no codec compresses) and not one phrase repeated (which every codec compresses far
// better than real messages). Seeded, so every run and every encoding sees the same bytes.

const WORDS = (
  'the to and a of i you it is in that for on we this be with have are not but at so can do ' +
  'was if just about what from will my me they build deploy release test tests failing passed ' +
  'branch main merge review pr please thanks ok yes no check logs error warning staging prod ' +
  'server client api endpoint latency timeout retry queue cache database query index migration ' +
  'ticket bug fix fixed issue feature flag rollout rollback config yaml docker image cluster node ' +
  'pod memory cpu disk alert page oncall incident postmortem meeting today tomorrow later now ' +
  'morning afternoon week sprint standup demo customer user team channel thread message reply ' +
  'sounds good looks great lgtm approved blocked waiting done working on it let me know think ' +
  'maybe probably should could would need want see look try again still also because when then ' +
  'there here some more any all one two three first last next new old same different right wrong'
).split(' ');
const NAMES = ['@alice', '@bob', '@carol', '@dave', '@erin', '@frank', '@grace', '@heidi'];

/** A small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `chars` characters of chat-like text (ASCII), different for each seed. */
export function chatText(chars: number, seed: number): string {
  const random = rng(seed * 2654435761 + 1);
  const parts: string[] = [];
  let length = 0;
  let sentence = 0;
  while (length < chars) {
    const r = random();
    let word: string;
    if (r < 0.02) word = NAMES[Math.floor(random() * NAMES.length)]!;
    else if (r < 0.03) word = `#${1000 + Math.floor(random() * 9000)}`;
    else if (r < 0.035) word = `https://ci.example.com/builds/${Math.floor(random() * 1e6)}`;
    else word = WORDS[Math.floor(WORDS.length * random() ** 2.2)]!; // skewed: common words dominate
    if (sentence === 0) word = word.charAt(0).toUpperCase() + word.slice(1);
    sentence++;
    if (sentence > 6 && random() < 0.18) {
      word += random() < 0.8 ? '.' : '?';
      sentence = 0;
    } else if (random() < 0.06) word += ',';
    parts.push(word);
    length += word.length + 1;
  }
  return parts.join(' ').slice(0, chars);
}

/**
 * A chat message's `data` whose JSON is about `bytes` bytes: the text plus the fields a chat
 * message carries. `sentAt` is the sender's clock (performance.timeOrigin + now, ms).
 */
export function chatData(bytes: number, seed: number, sentAt: number): Record<string, unknown> {
  const base = { type: 'chat', user: `user-${seed % 97}`, thread: `t-${seed % 13}`, sentAt, seq: seed, text: '' };
  const overhead = JSON.stringify(base).length;
  return { ...base, text: chatText(Math.max(1, bytes - overhead), seed) };
}

/**
 * A thread update's `data` whose JSON is about `bytes` bytes: a list of short chat messages
 * with their fields (what a history page or a thread catch-up carries), so structure repeats
 * too, not only words.
 */
export function chatThread(bytes: number, seed: number, sentAt: number): Record<string, unknown> {
  const messages: Array<Record<string, unknown>> = [];
  const data = { type: 'thread', thread: `t-${seed % 13}`, sentAt, seq: seed, messages };
  let length = JSON.stringify(data).length;
  for (let i = 0; length < bytes; i++) {
    const n = seed * 31 + i;
    const message = { id: `m${100_000 + n}`, user: `user-${n % 7}`, ts: 1_800_000_000_000 + n * 1537, text: chatText(40 + ((n * 37) % 120), n), reactions: n % 3 === 0 ? ['+1'] : [] };
    length += JSON.stringify(message).length + 1;
    messages.push(message);
  }
  return data;
}

export const PAYLOADS = { prose: chatData, thread: chatThread } as const;
export type PayloadKind = keyof typeof PAYLOADS;
