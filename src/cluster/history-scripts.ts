/**
 * The Lua scripts of group history in cluster mode (history.ts; docs/messaging.md, "Presence
 * and history in cluster mode"). A history group's offsets and epoch are the cluster's, kept in
 * Redis, and each script runs atomically there, so every node sees one sequence:
 *
 *   P h:GROUP    HASH epoch, top: the group's epoch and the last offset given out
 *   P hl:GROUP   LIST "TS FRAME", oldest first: the kept messages (the `msg` frame with its
 *                offset and epoch; TS: when it was published, for the ttl); its last entry
 *                has offset `top`, so the entry at index i has offset top - LLEN + 1 + i
 *
 * The epoch is made by the first script that finds none (a new group, or Redis lost it: a
 * restart without persistence, the key expired or was evicted) from a random candidate the
 * calling node passes (Lua has no good random source), and whatever was kept under an older one
 * is dropped with it: a client can never be given messages under an epoch they do not belong to.
 * Both keys expire after twice the ttl without use (never with ttl 0).
 *
 * Every script takes ARGV: P group size ttlMs now candidateEpoch, then its own.
 */

const PRELUDE = `
local P, g = ARGV[1], ARGV[2]
local size, ttl, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local meta, list = P..'h:'..g, P..'hl:'..g
local epoch = redis.call('HGET', meta, 'epoch')
local top
if not epoch then
  epoch, top = ARGV[6], 0
  redis.call('DEL', list)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
else
  top = tonumber(redis.call('HGET', meta, 'top') or '0')
end
if ttl > 0 then
  -- Past the ttl, oldest first (as GroupLog.expire: the first one young enough stops it).
  while true do
    local e = redis.call('LINDEX', list, 0)
    if not e then break end
    if tonumber(string.sub(e, 1, string.find(e, ' ', 1, true) - 1)) >= now - ttl then break end
    redis.call('LPOP', list)
  end
  redis.call('PEXPIRE', meta, ttl * 2)
  redis.call('PEXPIRE', list, ttl * 2)
end
local function frameOf(e)
  return string.sub(e, string.find(e, ' ', 1, true) + 1)
end
-- The offset of the oldest kept message (top + 1 when none is).
local function first()
  return top - redis.call('LLEN', list) + 1
end
`;

/**
 * ARGV: ... head ts: a message (its `msg` frame without the closing offset and epoch) gets the
 * next offset, is kept (`size` bounds the list) and PUBLISHed on the group's channel, complete,
 * with an empty origin, so that every node with members (the publishing one too) forwards it
 * to its shards in the order of the offsets.
 * -> {offset, epoch}
 */
export const HISTORY_APPEND = `${PRELUDE}
local head, ts = ARGV[7], ARGV[8]
top = redis.call('HINCRBY', meta, 'top', 1)
local frame = head..',"offset":'..top..',"epoch":"'..epoch..'"}'
redis.call('RPUSH', list, ts..' '..frame)
if redis.call('LLEN', list) > size then redis.call('LTRIM', list, -size, -1) end
redis.call('PUBLISH', P..'g:'..g, string.char(0)..frame)
return {top, epoch}
`;

/**
 * ARGV: ... since (-1: not asked) sinceEpoch maxBytes nodeChannel token: the answer to a join,
 * PUBLISHed on the joining node's channel rather than returned, so that it reaches the node in
 * Redis's one order with the group's messages (the node subscribed the group's channel before):
 * every message up to `top` before it, every later one after it.
 * Published: MessagePack [3, token, top, epoch, recovered (-1 not asked, 0, 1), frames, error]
 * (error '' or why `since` is refused).
 */
export const HISTORY_JOIN = `${PRELUDE}
local since, sinceEpoch, maxBytes, channel, token = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]), ARGV[10], ARGV[11]
local recovered, frames, err = -1, {}, ''
if since >= 0 then
  recovered = 0
  if sinceEpoch == epoch then
    if since > top then
      err = 'since.offset '..since..' is past the group\\'s last offset '..top..' (epoch '..epoch..')'
    elseif since + 1 >= first() then
      local bytes = 0
      for _, e in ipairs(redis.call('LRANGE', list, since + 1 - first(), -1)) do
        local f = frameOf(e)
        bytes = bytes + #f
        frames[#frames + 1] = f
      end
      if bytes > maxBytes then frames = {} else recovered = 1 end
    end
  end
end
redis.call('PUBLISH', channel, cmsgpack.pack({3, token, top, epoch, recovered, frames, err}))
return 1
`;

/**
 * ARGV: ... since limit maxBytes: one page of `history`, the messages after `since`, at most
 * `limit` and `maxBytes` (at least one when any is there).
 * -> {top, epoch, more (0|1), frame...}
 */
export const HISTORY_PAGE = `${PRELUDE}
local since, limit, maxBytes = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local out = {top, epoch, 0}
if since >= top then return out end
local from = math.max(since + 1, first())
local entries = redis.call('LRANGE', list, from - first(), from - first() + limit)
local bytes = 0
for i, e in ipairs(entries) do
  local f = frameOf(e)
  if i > limit or (i > 1 and bytes + #f > maxBytes) then
    out[3] = 1
    break
  end
  out[#out + 1] = f
  bytes = bytes + #f
end
return out
`;
