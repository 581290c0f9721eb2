/**
 * The Lua scripts of group history in cluster mode (history.ts; docs/messaging.md, "Presence
 * and history in cluster mode"). A history group's offsets and epoch are the cluster's, kept in
 * Redis, and each script runs atomically there, so every node sees one sequence:
 *
 *   P h:GROUP    HASH epoch, top, rid: the group's epoch, the last offset given out, and the
 *                run_id of the Redis server that last ran a script on it
 *   P hl:GROUP   LIST "TS FRAME", oldest first: the kept messages (the `msg` frame with its
 *                offset and epoch; TS: when it was published, for the ttl); its last entry
 *                has offset `top`, so the entry at index i has offset top - LLEN + 1 + i
 *
 * and, over all groups, what history.max_groups and history.max_bytes bound cluster-wide:
 *
 *   P hu   ZSET group -> when last used (ms): every group with an epoch (max_groups forgets
 *          the least recently used, a group without members here or on any node first)
 *   P hf   ZSET group -> when last appended to (ms): groups holding messages (max_bytes takes
 *          the oldest message of the first)
 *   P hb   HASH group -> bytes of its kept entries;  P ht  STRING: their sum
 *
 * The epoch is made by the first script that finds none (a new group, or Redis lost it: a
 * restart without persistence, the key expired or was evicted) from a random candidate the
 * calling node passes (Lua has no good random source), and whatever was kept under an older one
 * is dropped with it: a client can never be given messages under an epoch they do not belong to.
 * Both keys expire after twice the ttl without use (never with ttl 0). The bookkeeping keys do
 * not expire; a group whose keys went without a script (expired, or evicted under `maxmemory`)
 * is counted off when a script next meets it, as its own or as the oldest in hu or hf.
 *
 * Every script takes ARGV: P group size ttlMs now candidateEpoch maxGroups maxBytes runId (the
 * node's word for the Redis server's run_id, '' if unknown), then its own.
 *
 * What one script costs Redis does not grow with a rule's `size`: a join reads no further back
 * than max_replay_bytes, the ttl and size trims drop at most TRIM_MAX and 1000 entries (the rest
 * in the next scripts; first() does not count what is left of them as kept), and a forgotten
 * group's list is UNLINKed (freed off Redis's main thread).
 */

/** Most entries past the ttl one script drops (the rest go in the next ones). */
const TRIM_MAX = 1000;
/** Entries HISTORY_JOIN reads at a time, newest first. */
const CHUNK = 100;

const PRELUDE = `
local P, g = ARGV[1], ARGV[2]
local size, ttl, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local maxGroups, maxBytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local meta, list = P..'h:'..g, P..'hl:'..g
local used, filled, sizes, total = P..'hu', P..'hf', P..'hb', P..'ht'
-- Bytes kept by group, counted in hb and ht as entries come and go; returns the group's and the sum.
local function counted(name, bytes)
  return redis.call('HINCRBY', sizes, name, bytes), redis.call('INCRBY', total, bytes)
end
-- Counts off whatever name is still counted with (its keys may be gone already).
local function uncount(name)
  local bytes = redis.call('HGET', sizes, name)
  if not bytes then return end
  redis.call('DECRBY', total, tonumber(bytes))
  redis.call('HDEL', sizes, name)
  redis.call('ZREM', filled, name)
end
-- Drops the oldest entry of name's list; returns the sum of bytes kept after it. A group whose
-- count reaches 0 (its list is empty) is filled no more, as is one whose list is gone.
local function dropOldest(name)
  local e = redis.call('LPOP', P..'hl:'..name)
  if not e then
    uncount(name)
    return tonumber(redis.call('GET', total) or '0')
  end
  local left, sum = counted(name, -#e)
  if left <= 0 then uncount(name) end
  return sum
end
-- The run_id of the Redis server running this script, read once (INFO costs about 10 us); ''
-- where INFO is refused or names none: every stamp is '' then, and epochs stay as before stamps.
local current
local function runId()
  if not current then
    local info = redis.pcall('INFO', 'server')
    current = type(info) == 'string' and string.match(info, 'run_id:(%x+)') or ''
  end
  return current
end
-- Whether this server may not have every write the one before it acknowledged: unless it loaded
-- its own append-only file (AOF on, and no second replication id: it was not a replica promoted
-- since it started), it may (an RDB snapshot, a replica behind its primary).
local function mayHaveLost()
  if not string.find(redis.call('INFO', 'persistence'), 'aof_enabled:1', 1, true) then return true end
  return not string.find(redis.call('INFO', 'replication'), 'master_replid2:${'0'.repeat(40)}', 1, true)
end
local stored = redis.call('HMGET', meta, 'epoch', 'top', 'rid')
local epoch, top = stored[1], 0
local created = not epoch
-- A new epoch (the candidate), with nothing kept under the old one.
local function renew()
  epoch, top = ARGV[6], 0
  -- UNLINK: a list of a large rule's size is freed off Redis's main thread.
  redis.call('UNLINK', list)
  uncount(g)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0, 'rid', runId())
end
if created then renew() else
  top = tonumber(stored[2] or '0')
  -- rid: the server that last wrote the group. The node's word for the current one (ARGV[9]) spares
  -- the INFO; it may be stale ('' while unknown), so a difference is checked with INFO itself,
  -- and the stamp only ever becomes the running server's (two nodes never undo each other).
  local stamp = stored[3]
  if stamp ~= ARGV[9] and stamp ~= runId() then
    -- Written by another server (a restart, a failover), or by a version without stamps (kept):
    -- the offsets after a top it came back with would be given out again under the same epoch.
    if stamp and mayHaveLost() then renew() else redis.call('HSET', meta, 'rid', runId()) end
  end
end
redis.call('ZADD', used, now, g)
local function tsOf(e)
  return tonumber(string.sub(e, 1, string.find(e, ' ', 1, true) - 1))
end
-- Whether the ttl trim below stopped at its bound with entries past the ttl perhaps left.
local stale = false
if ttl > 0 then
  -- Past the ttl, oldest first (as GroupLog.expire: the first one young enough stops it), at
  -- most ${TRIM_MAX} per script: a group that went quiet for longer than its ttl with a large size
  -- cost one script O(size); the rest go in the scripts after (first() does not count them
  -- meanwhile). One LINDEX when none is due, as before; else how many are found by doubling,
  -- then halving (LINDEX, entries in the order of their ts: two when one is due, the usual
  -- case), and only those read, for their bytes: reading a hundred entries whatever was due
  -- made an append of 60 KB to a group with a ttl 22x dearer.
  local dropped = 0
  local function due(count)
    return tsOf(redis.call('LINDEX', list, count - 1)) < now - ttl
  end
  local oldest = redis.call('LINDEX', list, 0)
  if oldest and tsOf(oldest) < now - ttl then
    local cap = math.min(redis.call('LLEN', list), ${TRIM_MAX})
    local lo, hi, step = 1, cap, 1
    while lo < cap do
      local probe = math.min(lo + step, cap)
      if not due(probe) then
        hi = probe - 1
        break
      end
      lo, step = probe, step * 2
    end
    while lo < hi do
      local mid = math.floor((lo + hi + 1) / 2)
      if due(mid) then lo = mid else hi = mid - 1 end
    end
    local bytes = 0
    for _, e in ipairs(redis.call('LRANGE', list, 0, lo - 1)) do bytes = bytes + #e end
    redis.call('LTRIM', list, lo, -1)
    if counted(g, -bytes) <= 0 then uncount(g) end
    dropped = lo
  end
  stale = dropped >= ${TRIM_MAX}
  redis.call('PEXPIRE', meta, ttl * 2)
  redis.call('PEXPIRE', list, ttl * 2)
end
-- A new group over max_groups (or the limit shrank): forget the least recently used, one without
-- members first among the oldest few (its next message starts a new epoch). Bounded per script.
for _ = 1, created and 100 or 0 do
  if redis.call('ZCARD', used) <= maxGroups then break end
  local oldest = redis.call('ZRANGE', used, 0, 15)
  local victim
  for _, name in ipairs(oldest) do
    if name ~= g then
      victim = victim or name
      if redis.call('EXISTS', P..'pg:'..name) == 0 then
        victim = name
        break
      end
    end
  end
  if not victim then break end
  redis.call('UNLINK', P..'h:'..victim, P..'hl:'..victim)
  uncount(victim)
  redis.call('ZREM', used, victim)
end
local function frameOf(e)
  return string.sub(e, string.find(e, ' ', 1, true) + 1)
end
-- How many entries to read next with \`room\` bytes left to fill: as many as fit if each were
-- \`widest\` (the largest message a pub makes, or one read already larger), at least 1, at most
-- ${CHUNK}. So a script reads at most its budget plus one message: a fixed ${CHUNK} read 6 MB of
-- 60 KB messages (13-14 ms of Redis) for a join or page that holds 4.
local function chunk(room, widest)
  return math.max(1, math.min(${CHUNK}, math.floor(room / widest)))
end
-- The offset of the entry at index 0 of the list.
local function base()
  return top - redis.call('LLEN', list) + 1
end
-- How many entries at the head are past the ttl: 0 unless the trim above stopped at its bound,
-- then found in O(log size) LINDEXes (the entries are in the order of their ts).
local expiredAhead
local function expired()
  if not stale then return 0 end
  if expiredAhead then return expiredAhead end
  local lo, hi = 0, redis.call('LLEN', list)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if tsOf(redis.call('LINDEX', list, mid)) < now - ttl then lo = mid + 1 else hi = mid end
  end
  expiredAhead = lo
  return lo
end
-- The offset of the oldest kept message (top + 1 when none is): entries past the ttl or beyond
-- \`size\` that the bounded loops have not dropped yet are not kept.
local function first()
  return math.max(base() + expired(), top - size + 1)
end
`;

/**
 * ARGV: ... head ts: a message (its `msg` frame without the closing offset and epoch) gets the
 * next offset, is kept (`size` bounds the list, max_bytes all lists) and PUBLISHed on the
 * group's channel, complete, with an empty origin, so that every node with members (the
 * publishing one too) forwards it to its shards in the order of the offsets.
 * -> {offset, epoch}
 */
export const HISTORY_APPEND = `${PRELUDE}
local head, ts = ARGV[10], ARGV[11]
top = redis.call('HINCRBY', meta, 'top', 1)
local frame = head..',"offset":'..top..',"epoch":"'..epoch..'"}'
local entry = ts..' '..frame
local length = redis.call('RPUSH', list, entry)
-- The first entry of a list that went without a script (maxmemory): what it was counted with is not kept.
if length == 1 then uncount(g) end
local _, kept = counted(g, #entry)
redis.call('ZADD', filled, now, g)
if ttl > 0 then redis.call('PEXPIRE', list, ttl * 2) end
-- Beyond size (one, unless the rule's size shrank: then at most 1000 per script; first() counts them off).
for _ = size + 1, math.min(length, size + 1000) do kept = dropOldest(g) end
-- Over max_bytes: the oldest messages of the group appended to least recently go first.
for _ = 1, 1000 do
  if kept <= maxBytes then break end
  local oldest = redis.call('ZRANGE', filled, 0, 0)[1]
  if not oldest then break end
  kept = dropOldest(oldest)
end
redis.call('PUBLISH', P..'g:'..g, string.char(0)..frame)
return {top, epoch}
`;

/**
 * ARGV: ... since (-1: not asked) sinceEpoch maxReplay nodeChannel token maxEntry renew(1|0): the
 * answer to a join, PUBLISHed on the joining node's channel rather than returned, so that it
 * reaches the node in Redis's one order with the group's messages (the node subscribed the
 * group's channel before): every message up to `top` before it, every later one after it.
 * \`renew\` 1: \`since\` is the node's own position (a resume), read from Redis: past the top, it
 * proves Redis lost what it gave out (a snapshot, a replica promoted), and the group takes a new
 * epoch, or the offsets after the top would number other messages under the same epoch. (A
 * client's \`since\` past the top is only refused: anyone could send one.)
 * Published: MessagePack [3, token, top, epoch, recovered (-1 not asked, 0, 1), frames, error]
 * (error '' or why `since` is refused).
 */
export const HISTORY_JOIN = `${PRELUDE}
local since, sinceEpoch, maxReplay, channel, token = tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12]), ARGV[13], ARGV[14]
local recovered, frames, err = -1, {}, ''
if since >= 0 then
  recovered = 0
  if ARGV[16] == '1' and sinceEpoch == epoch and since > top then renew() end
  if sinceEpoch == epoch then
    if since > top then
      err = 'since.offset '..since..' is past the group\\'s last offset '..top..' (epoch '..epoch..')'
    elseif since + 1 >= first() and (top - since) * #(',"offset":'..(since + 1)..',"epoch":"'..epoch..'"}') <= maxReplay then
      -- (Each frame ends with its offset and epoch: more messages than maxReplay holds of those
      -- alone are refused unread.) Summed from the newest back, no further than past maxReplay
      -- (as GroupLog.moreBytesAfter): a join with an old \`since\` on a group keeping 20,000
      -- messages read them all, 23 ms of Redis each, to answer false.
      local from, hi = since + 1 - base(), redis.call('LLEN', list) - 1
      local bytes, parts, widest = 0, {}, tonumber(ARGV[15])
      while hi >= from and bytes <= maxReplay do
        local part = redis.call('LRANGE', list, math.max(from, hi - chunk(maxReplay - bytes, widest) + 1), hi)
        for i = #part, 1, -1 do
          part[i] = frameOf(part[i])
          bytes = bytes + #part[i]
          widest = math.max(widest, #part[i])
          if bytes > maxReplay then break end
        end
        if #part == 0 then break end
        parts[#parts + 1] = part
        hi = hi - #part
      end
      if bytes <= maxReplay then
        recovered = 1
        for p = #parts, 1, -1 do
          for _, f in ipairs(parts[p]) do frames[#frames + 1] = f end
        end
      end
    end
  end
end
redis.call('PUBLISH', channel, cmsgpack.pack({3, token, top, epoch, recovered, frames, err}))
return 1
`;

/**
 * ARGV: ... since limit maxPageBytes maxEntry: one page of `history`, the messages after `since`,
 * at most `limit` and `maxPageBytes` (at least one when any is there).
 * -> {top, epoch, more (0|1), frame...}
 */
export const HISTORY_PAGE = `${PRELUDE}
local since, limit, maxPageBytes, widest = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local out = {top, epoch, 0}
if since >= top then return out end
local at = math.max(since + 1, first()) - base()
-- Read as the bytes left allow (chunk), up to one entry past the page, to tell \`more\`.
local bytes, taken = 0, 0
while true do
  local entries = redis.call('LRANGE', list, at, at + math.min(limit - taken, chunk(maxPageBytes - bytes, widest) - 1))
  if #entries == 0 then return out end
  for _, e in ipairs(entries) do
    local f = frameOf(e)
    if taken == limit or (taken > 0 and bytes + #f > maxPageBytes) then
      out[3] = 1
      return out
    end
    out[#out + 1] = f
    taken, bytes, widest = taken + 1, bytes + #f, math.max(widest, #f)
  end
  at = at + #entries
end
`;

/** The last message of a history group this node forwarded to its members. */
export interface Position {
  epoch: string;
  offset: number;
}

/** Where a history message's offset and epoch are: the script ends every frame with them. */
const OFFSET_FIELD = ',"offset":';
const EPOCH_FIELD = ',"epoch":"';

/** The offset and epoch a history `msg` frame ends with (HISTORY_APPEND writes them last), or null. */
export function positionOf(frame: string): Position | null {
  const at = frame.lastIndexOf(OFFSET_FIELD);
  const epochAt = frame.indexOf(EPOCH_FIELD, at);
  if (at < 0 || epochAt < 0 || !frame.endsWith('"}')) return null;
  const offset = Number(frame.slice(at + OFFSET_FIELD.length, epochAt));
  return Number.isSafeInteger(offset) ? { offset, epoch: frame.slice(epochAt + EPOCH_FIELD.length, -2) } : null;
}

/** Most ms a ttl counts (about 31,700 years): twice it is still written as an integer by Lua (2e+17 is not). */
const MAX_TTL_MS = 1e15;

/**
 * A rule's ttl (seconds, any the schema takes) in whole milliseconds, at least 1 when set: the
 * scripts PEXPIRE with twice it, and Redis refuses a fraction (1.001 s is 1000.9999999999999 ms
 * in a double) or a number Lua writes with an exponent, which failed every pub, join and
 * `history` of the group as if Redis were away.
 */
export function ttlMs(ttl: number): number {
  return ttl > 0 ? Math.min(MAX_TTL_MS, Math.max(1, Math.round(ttl * 1000))) : 0;
}
