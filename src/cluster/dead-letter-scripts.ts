/**
 * The dead letters in Redis and their bound (store.max_dead_letters, store.max_dead_letter_bytes),
 * as Lua every script that writes or removes a letter shares (P = cluster.key_prefix):
 *
 *   P dlq      ZSET of the letters' ids, all scored 0: listed in id order (BYLEX), as LMDB lists them
 *   P d:ID     HASH: the letter (the message's fields, `bytes` of its data, reason, failedAt)
 *   P dla      ZSET id -> failedAt: their age, by which the bound drops the oldest first
 *   P dlb      the bytes of data of the letters in P dla
 *
 * The scripts that add letters (STORE, SWEEP, DEAD_ON_ARRIVAL) trim in the same step, SWEEP and
 * DEAD_ON_ARRIVAL a few more than they add (a lowered bound is caught up sweep by sweep): the
 * bound holds without a sweep of its own, and no script runs long. Letters
 * written by a version before the bound have no age (not in P dla) until a node starts and
 * indexes them (INDEX_AGES, by their failedAt); one written meanwhile by a node of that version
 * goes first by id once no aged letter is left.
 */

/** Letters a script may drop beyond those it adds (a lowered bound is caught up with this many at a time). */
const TRIM_SLACK = 100;

/** Lua helpers; they need `P` defined before them. */
export const DEAD_LETTER_HELPERS = `
-- The letter just written at P d:ID joins the queue and its age order.
local function lettered(id, bytes, now)
  redis.call('ZADD', P..'dlq', 0, id)
  if redis.call('ZADD', P..'dla', now, id) == 1 then redis.call('INCRBY', P..'dlb', bytes) end
end
-- Removes a letter and its age; 1 when it was there.
local function unletter(id)
  local d = P..'d:'..id
  if redis.call('ZREM', P..'dla', id) == 1 then redis.call('DECRBY', P..'dlb', tonumber(redis.call('HGET', d, 'bytes') or '0')) end
  redis.call('DEL', d)
  return redis.call('ZREM', P..'dlq', id)
end
-- Drops the oldest letters while there are more than maxLetters or maxBytes, at most
-- added + ${TRIM_SLACK}: how many. No limits (a caller of a version before the bound): none.
local function trimdead(maxLetters, maxBytes, added)
  if not maxLetters or not maxBytes then return 0 end
  local n = 0
  while n < added + ${TRIM_SLACK} and (redis.call('ZCARD', P..'dlq') > maxLetters or tonumber(redis.call('GET', P..'dlb') or '0') > maxBytes) do
    local oldest = redis.call('ZRANGE', P..'dla', 0, 0)[1] or redis.call('ZRANGE', P..'dlq', 0, 0)[1]
    if not oldest then break end
    unletter(oldest)
    n = n + 1
  end
  return n
end
`;

/** Letters one PURGE step deletes: a large queue is purged in steps, so Redis never blocks long on it. */
export const PURGE_STEP = 1000;

/** ARGV: P step -> letters deleted (0: none left). */
export const PURGE = `
local P, step = ARGV[1], tonumber(ARGV[2])
${DEAD_LETTER_HELPERS}
local ids = redis.call('ZRANGE', P..'dlq', 0, step - 1)
for _, id in ipairs(ids) do unletter(id) end
return #ids
`;

/** ARGV: P id -> 1 when the letter was there. */
export const REMOVE = `
local P, id = ARGV[1], ARGV[2]
${DEAD_LETTER_HELPERS}
return unletter(id)
`;

/** ARGV: P after step -> {the last id read ('' at the end), letters indexed}: P dla and dlb for letters without an age, `step` ids at a time. */
export const INDEX_AGES = `
local P, after, step = ARGV[1], ARGV[2], tonumber(ARGV[3])
${DEAD_LETTER_HELPERS}
local ids = redis.call('ZRANGEBYLEX', P..'dlq', after == '' and '-' or '('..after, '+', 'LIMIT', 0, step)
local n = 0
for _, id in ipairs(ids) do
  if not redis.call('ZSCORE', P..'dla', id) then
    local f = redis.call('HMGET', P..'d:'..id, 'failedAt', 'bytes', 'data')
    local bytes = tonumber(f[2] or '') or #(f[3] or '')
    -- What unletter() takes back from P dlb.
    redis.call('HSET', P..'d:'..id, 'bytes', bytes)
    lettered(id, bytes, tonumber(f[1] or '0') or 0)
    n = n + 1
  end
end
return {#ids == step and ids[#ids] or '', n}
`;
