/** Arithmetic the report's figures share. */

/** Rounded to 3 decimals; 0 for NaN and infinities (they do not survive JSON). */
export function round3(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1000) / 1000 : 0;
}

export function sumValues(r: Record<string, number>): number {
  let s = 0;
  for (const v of Object.values(r)) s += v;
  return s;
}
