/**
 * The value types the configuration schema's keys share (schema.ts, delivery-schema.ts):
 * durations in seconds, timer delays, counts, mappings of names. Defined once, so that every
 * key of a kind is bounded the same way in every section.
 */
import { z } from 'zod';

export const seconds = z.number().finite().nonnegative();
/** A delay that arms a timer as it is: at most a day (Node's timers fire at once past 24.8 days). */
const MAX_TIMER_S = 24 * 3600;
export const timerSeconds = seconds.max(MAX_TIMER_S);
export const positiveInt = z.number().int().positive();
export const nonNegativeInt = z.number().int().nonnegative();

/**
 * A mapping keyed by user ids or group names, as a Map: as a plain object, a user called
 * `constructor` would find Object.prototype's, and z.record would drop a key `__proto__`.
 */
export function nameMap<T extends z.ZodTypeAny>(value: T): z.ZodType<Map<string, z.output<T>>, z.ZodTypeDef, unknown> {
  return z.unknown().transform((input, ctx) => {
    const out = new Map<string, z.output<T>>();
    if (input === undefined) return out;
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'expected a mapping of names' });
      return z.NEVER;
    }
    for (const [key, raw] of Object.entries(input)) {
      const parsed = value.safeParse(raw);
      if (parsed.success) out.set(key, parsed.data);
      else for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: [key, ...issue.path] } as z.IssueData);
    }
    return out;
  });
}
