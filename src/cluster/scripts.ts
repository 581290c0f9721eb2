/**
 * The Lua scripts of the Redis store (cluster mode). Each runs atomically in Redis, so no two
 * nodes ever claim, acknowledge or sweep the same message at once: whatever a script decides
 * is the one decision. Layout (prefix P = cluster.key_prefix; docs/messaging.md shows it whole):
 *
 *   P seq            INCR: acceptance sequence (the order within a priority)
 *   P m:ID           HASH: target from group data pri ts at attempts strategy state holder bytes seq
 *                    dt (claimed at) ex (the dt whose attempt was given back) gb (SWEEP's give-backs)
 *                    state: s scheduled, w waiting for a recipient, f in flight (awaiting its ack)
 *   P q:TARGET       ZSET id -> (3 - pri) * 1e13 + seq: delivery order per recipient (u:USER, g:GROUP)
 *   P qw:GROUP       ZSET: the group's `any` messages in state w, scored as in q:g:GROUP, so that
 *                    a join reads what waits for a member instead of scanning the whole queue
 *   P qu:USER, qf:USER  ZSETs: the user's messages in state w, and in state f, scored as in
 *                    q:u:USER; P qs:USER: how many are in state s. A connection and a pump read
 *                    these, not the whole queue (window-scripts.ts: rebuilt when they do not add up)
 *   P qd:GROUP       ZSET: the group's `any` messages in state f, scored by claim time (RECLAIM)
 *   P due            ZSET id -> when a node must look at it again: `at` (s), the ack deadline
 *                    (f), the expiry after delivery.ttl (w)
 *   P count, bytes   stored messages and bytes of data (store.max_messages, store.max_bytes)
 *   P snd:FROM       messages stored per sender (delivery.max_stored_per_sender)
 *   P sndb:FROM      their bytes of data (delivery.max_stored_bytes_per_sender)
 *   P wf:USER        HASH n, b: the user's messages in flight and their bytes; ab: the bytes of
 *                    the `any` messages it holds (their count is P load's): its window
 *   P wb:USER        set while some of the user's messages wait for room in its window
 *   P wg:USER        SET of groups whose \`any\` index (P pa:GROUP) left the user out for want of
 *                    room: its freed window puts it back and pumps them (any-index-scripts.ts)
 *   P wt:USER        ZSET the same groups by their turn for its freed window (any-index-scripts.ts)
 *   P load           HASH user -> `any` messages it holds unacknowledged (least_connections)
 *   P pm:, pa:, rc:GROUP  the members an `any` picks from, and the rotation: any-index-scripts.ts
 *   P strategies     HASH group -> `any` strategy set by setGroupLoadBalanceStrategy
 *   P dlq, d:ID      the dead letters, P dla and dlb their age and bytes: dead-letter-scripts.ts
 *   P bh:NODE        set, with a time to live, while the node is behind on its rings (SWEEP)
 *   P nodes          ZSET node -> last heartbeat; P pu:USER, pg:GROUP, nk:NODE: presence.ts;
 *                    P pc:GROUP and the scripts that change members: presence-scripts.ts
 *
 * Every script takes P as ARGV[1] and builds its keys from it: the store is for one Redis
 * (a primary, with replicas or Sentinel), not a Redis Cluster, whose scripts must name every
 * key they touch up front.
 */
import { DEAD_LETTER_HELPERS } from './dead-letter-scripts.js';
import { MEMBER_HELPERS } from './presence-scripts.js';

/** Helpers every script of the store starts with (below, ROUTE_ANY in route-any-script.ts, and window-scripts.ts). */
export const PRELUDE = `
local P = ARGV[1]
-- The \`any\` messages a member holds unacknowledged: their count (P load, which least_connections
-- reads, and which nodes of older versions keep too) and bytes (P wf:HOLDER ab) are in its window.
local function loadinc(holder, bytes)
  redis.call('HINCRBY', P..'load', holder, 1)
  redis.call('HINCRBY', P..'wf:'..holder, 'ab', bytes)
end
local function loaddec(holder, bytes)
  if not holder or holder == '' then return end
  if redis.call('HINCRBY', P..'load', holder, -1) <= 0 then
    redis.call('HDEL', P..'load', holder)
    redis.call('HDEL', P..'wf:'..holder, 'ab')
  elseif redis.call('HINCRBY', P..'wf:'..holder, 'ab', -bytes) <= 0 then
    redis.call('HDEL', P..'wf:'..holder, 'ab')
  end
end
-- A message starts or stops waiting for its recipient: P qw:GROUP (an \`any\`) or P qu:USER
-- follows, scored as in its queue, so that what looks for waiting messages reads only them.
local function waits(id, target)
  local kind = string.sub(target, 1, 2)
  if kind == 'g:' then redis.call('ZADD', P..'qw:'..string.sub(target, 3), redis.call('ZSCORE', P..'q:'..target, id), id)
  elseif kind == 'u:' then redis.call('ZADD', P..'qu:'..string.sub(target, 3), redis.call('ZSCORE', P..'q:'..target, id), id) end
end
local function settles(id, target)
  local kind = string.sub(target, 1, 2)
  if kind == 'g:' then redis.call('ZREM', P..'qw:'..string.sub(target, 3), id)
  elseif kind == 'u:' then redis.call('ZREM', P..'qu:'..string.sub(target, 3), id) end
end
-- A message goes in flight (sign 1, claimed \`at\`) or leaves it (-1). A user's (u:USER): P
-- wf:USER (the window's count) and P qf:USER (the ids, scored as in the queue) follow; an
-- \`any\` (g:GROUP): P qd:GROUP, the ids scored by claim time, which RECLAIM reads.
local function flight(id, target, bytes, sign, at)
  local kind = string.sub(target, 1, 2)
  if kind == 'g:' then
    local qd = P..'qd:'..string.sub(target, 3)
    if sign > 0 then redis.call('ZADD', qd, at, id) else redis.call('ZREM', qd, id) end
    return
  end
  if kind ~= 'u:' then return end
  local user = string.sub(target, 3)
  if sign > 0 then redis.call('ZADD', P..'qf:'..user, redis.call('ZSCORE', P..'q:'..target, id) or 0, id) else redis.call('ZREM', P..'qf:'..user, id) end
  local k = P..'wf:'..user
  if redis.call('HINCRBY', k, 'n', sign) <= 0 then redis.call('HDEL', k, 'n', 'b') else redis.call('HINCRBY', k, 'b', sign * bytes) end
end
-- A user's message is scheduled (sign 1) or no longer (-1): P qs:USER counts them.
local function scheduled(target, sign)
  if string.sub(target, 1, 2) ~= 'u:' then return end
  local k = P..'qs:'..string.sub(target, 3)
  if redis.call('INCRBY', k, sign) <= 0 then redis.call('DEL', k) end
end
-- Removes every trace of a stored message (not its dead letter).
local function forget(id)
  local m = P..'m:'..id
  local f = redis.call('HMGET', m, 'target', 'from', 'bytes', 'state', 'holder')
  if not f[1] then return end
  redis.call('DEL', m)
  redis.call('ZREM', P..'q:'..f[1], id)
  settles(id, f[1])
  redis.call('ZREM', P..'due', id)
  redis.call('DECR', P..'count')
  redis.call('DECRBY', P..'bytes', tonumber(f[3]))
  if redis.call('DECR', P..'snd:'..f[2]) <= 0 then redis.call('DEL', P..'snd:'..f[2], P..'sndb:'..f[2])
  elseif redis.call('DECRBY', P..'sndb:'..f[2], tonumber(f[3])) <= 0 then redis.call('DEL', P..'sndb:'..f[2]) end
  if f[4] == 'f' then
    loaddec(f[5], tonumber(f[3]))
    flight(id, f[1], tonumber(f[3]), -1)
  elseif f[4] == 's' then
    scheduled(f[1], -1)
  end
  -- Nothing of the user's is left to wait for room: the mark goes too (only a pump of an online
  -- user cleared it, and a user who never came back kept one key for ever).
  if string.sub(f[1], 1, 2) == 'u:' and redis.call('EXISTS', P..'q:'..f[1]) == 0 then redis.call('DEL', P..'wb:'..string.sub(f[1], 3)) end
end
${DEAD_LETTER_HELPERS}
local function deadletter(id, reason, now)
  local m = P..'m:'..id
  local all = redis.call('HGETALL', m)
  if #all == 0 then return end
  local d = P..'d:'..id
  unletter(id)
  redis.call('HSET', d, unpack(all))
  redis.call('HSET', d, 'reason', reason, 'failedAt', now)
  lettered(id, tonumber(redis.call('HGET', d, 'bytes') or '0'), now)
  forget(id)
end
local function backoff(attempts, ackMs, mult, maxMs)
  return math.min(ackMs * (mult ^ (attempts - 1)), maxMs)
end
-- Gives a delivery's attempt back, once per delivery (its claim time, dt; ex: the dt it was
-- given back for): RECLAIM's claim whose answer was lost, SWEEP's holder node behind. With
-- \`limit\`, at most that many times per message (gb counts them). Whether it did.
local function giveback(m, limit)
  local e = redis.call('HMGET', m, 'dt', 'ex', 'attempts', 'gb')
  if not e[1] or e[1] == e[2] then return false end
  if limit and tonumber(e[4] or '0') >= limit then return false end
  redis.call('HSET', m, 'attempts', tonumber(e[3]) - 1, 'ex', e[1])
  if limit then redis.call('HINCRBY', m, 'gb', 1) end
  return true
end
-- Marks a waiting message delivered (to holder, '' for a user's message); returns its fields
-- and its ack deadline (whole ms, rounded up: Redis would cut a fraction off).
-- The nodes where \`user\` has connections, as a claim records them (hn), comma-separated.
local function heldOn(user)
  local held, presence = {}, redis.call('HGETALL', P..'pu:'..user)
  for i = 1, #presence, 2 do
    if tonumber(presence[i + 1]) > 0 then held[#held + 1] = presence[i] end
  end
  return table.concat(held, ',')
end
-- \`held\`: heldOn() of the recipient, when the caller has it (a pump claims many for one user).
local function claim(id, holder, now, ackMs, mult, maxMs, held)
  local m = P..'m:'..id
  local s = redis.call('HMGET', m, 'state', 'target', 'bytes')
  if s[1] ~= 'w' then return false end
  settles(id, s[2])
  flight(id, s[2], tonumber(s[3]), 1, now)
  local attempts = redis.call('HINCRBY', m, 'attempts', 1)
  local deadline = now + backoff(attempts, ackMs, mult, maxMs)
  -- hn: the nodes where the recipient had connections, which SWEEP asks at the last attempt
  -- whether they lived past its deadline.
  held = held or heldOn(holder ~= '' and holder or string.sub(s[2], 3))
  redis.call('HSET', m, 'state', 'f', 'holder', holder, 'dt', now, 'hn', held)
  redis.call('ZADD', P..'due', deadline, id)
  if holder ~= '' then loadinc(holder, tonumber(s[3])) end
  local f = redis.call('HMGET', m, 'from', 'group', 'data', 'pri', 'ts', 'attempts')
  return {id, f[1], f[2], f[3], f[4], f[5], f[6], math.ceil(deadline)}
end
local function alive(node, since)
  local beat = redis.call('ZSCORE', P..'nodes', node)
  return beat and tonumber(beat) >= since
end
-- The live nodes where user has connections.
local function userNodes(user, since)
  local nodes = {}
  local presence = redis.call('HGETALL', P..'pu:'..user)
  for i = 1, #presence, 2 do
    if tonumber(presence[i + 1]) > 0 and alive(presence[i], since) then nodes[#nodes + 1] = presence[i] end
  end
  return nodes
end
`;

/**
 * ARGV: P id target from group data pri ts at strategy bytes perRecipient perSender(0: none)
 *       maxMessages maxBytes now ttlMs requeueOf perSenderBytes(0: none) [maxDeadLetters maxDeadBytes]
 * requeueOf: '' or the dead letter this message puts back (/admin/dlq): it must still be there,
 * and it goes in the same step as the message is stored, so one requeue of it wins.
 * At the recipient's cap (delivery.max_pending_per_user) the oldest LOW message that is not in
 * flight (of the 64 oldest LOW ones) is dead-lettered to make room; none: refused.
 * -> {'ok', state, droppedLowId|'', freed, deadDropped}, {'full', why} or {'gone', why}; freed:
 *    always '' now (the dropped message is never in flight, so it frees no window), kept for the
 *    reply's shape; deadDropped: the oldest dead letters dropped to keep their bound
 */
export const STORE = `${PRELUDE}
local LOW_SCAN = 64
local id, target, from, group, data = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local pri, ts, at, strategy, bytes = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11])
local perRecipient, perSender = tonumber(ARGV[12]), tonumber(ARGV[13])
local maxMessages, maxBytes, now, ttl = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local requeueOf = ARGV[18] or ''
local perSenderBytes = tonumber(ARGV[19] or '0')
if requeueOf ~= '' and redis.call('EXISTS', P..'d:'..requeueOf) == 0 then
  return {'gone', 'no dead letter '..requeueOf..' (requeued or purged meanwhile)'}
end
if tonumber(redis.call('GET', P..'count') or '0') >= maxMessages then
  return {'full', 'the store holds store.max_messages ('..maxMessages..') messages'}
end
if tonumber(redis.call('GET', P..'bytes') or '0') + bytes > maxBytes then
  return {'full', 'the store holds store.max_bytes ('..maxBytes..') bytes of data'}
end
if perSender > 0 and tonumber(redis.call('GET', P..'snd:'..from) or '0') >= perSender then
  return {'full', 'you have delivery.max_stored_per_sender ('..perSender..') messages stored'}
end
if perSenderBytes > 0 and tonumber(redis.call('GET', P..'sndb:'..from) or '0') + bytes > perSenderBytes then
  return {'full', 'you have '..(redis.call('GET', P..'sndb:'..from) or '0')..' bytes of messages stored; this one has '..bytes..' (delivery.max_stored_bytes_per_sender)'}
end
local q = P..'q:'..target
-- freed stays '' (its place in the reply is kept for the nodes that read it): the message
-- dropped is never in flight, so it leaves nobody's window.
local dropped, freed = '', ''
if redis.call('ZCARD', q) >= perRecipient then
  -- The oldest LOW message not in flight makes room: one the recipient holds was delivered,
  -- and its ack must still be taken (a dead letter of it would be delivered again by a requeue).
  local low = redis.call('ZRANGEBYSCORE', q, '30000000000000', '+inf', 'LIMIT', 0, LOW_SCAN)
  local room = false
  for _, lid in ipairs(low) do
    local st = redis.call('HGET', P..'m:'..lid, 'state')
    if not st then
      -- Its message is gone (a node of an older version left the entry): the entry goes, and its place is free.
      redis.call('ZREM', q, lid)
      room = true
      break
    elseif st ~= 'f' then
      dropped = lid
      break
    end
  end
  if dropped == '' and not room then
    local why = #low == LOW_SCAN and ' (of its '..LOW_SCAN..' oldest LOW ones, none is)' or ''
    return {'full', 'the queue of '..string.sub(target, 3)..' holds delivery.max_pending_per_user ('..perRecipient..') messages, none of them is LOW and waiting (not delivered already)'..why}
  end
  if dropped ~= '' then
    deadletter(dropped, 'queue full: dropped as the oldest LOW message for '..string.sub(target, 3)..' (delivery.max_pending_per_user)', now)
  end
end
local seq = redis.call('INCR', P..'seq')
local state, due = 'w', 0
if at > now then state, due = 's', at elseif ttl > 0 then due = now + ttl end
redis.call('HSET', P..'m:'..id, 'target', target, 'from', from, 'group', group, 'data', data, 'pri', pri, 'ts', ts,
  'at', at, 'attempts', 0, 'strategy', strategy, 'state', state, 'holder', '', 'bytes', bytes, 'seq', seq)
redis.call('ZADD', q, (3 - pri) * 1e13 + seq, id)
if state == 'w' then waits(id, target) else scheduled(target, 1) end
if due > 0 then redis.call('ZADD', P..'due', due, id) end
redis.call('INCR', P..'count')
redis.call('INCRBY', P..'bytes', bytes)
redis.call('INCR', P..'snd:'..from)
redis.call('INCRBY', P..'sndb:'..from, bytes)
if requeueOf ~= '' then unletter(requeueOf) end
-- Only when it added a letter: every send would otherwise pay the bound's two reads (SWEEP catches up a lowered bound).
return {'ok', state, dropped, freed, dropped == '' and 0 or trimdead(tonumber(ARGV[20]), tonumber(ARGV[21]), 1)}
`;

/**
 * A connection of \`node\` joined \`group\` (weight for \`weighted\`): recorded, the user's
 * first member connection in the group on any node told to every node with members
 * (presence-scripts.ts), the member indexed for \`any\` (any-index-scripts.ts), and the id of
 * the group's oldest waiting \`any\` message returned (P qw:GROUP: usually none while the group
 * has members), for the node to pump the group.
 * ARGV: P node sid group user weight
 */
export const JOIN = `${PRELUDE}${MEMBER_HELPERS}
local node, sid, group, user = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local field = node..'\\n'..sid
if redis.call('HSET', P..'pg:'..group, field, user..'\\n'..ARGV[6]) == 1 then
  indexMember(group, user, field)
  if counted(group, user, 1) then tell(group, {'+'..user}) end
end
listMember(node, group, sid)
-- Whether some wait: the node then pumps the group (the ids themselves could be thousands).
return redis.call('ZRANGE', P..'qw:'..group, 0, 0)
`;

/**
 * Messages whose time came: a scheduled one becomes waiting (route it), one in flight past its
 * ack deadline waits again (route it) or, after max_attempts, is dead-lettered, and one that
 * waited delivery.ttl is dead-lettered. One script, so two nodes sweeping at once never take
 * the same message.
 *
 * A node whose shards hold records not yet in their rings (acks among them, perhaps) marks
 * itself behind (P bh:NODE, for behindMs; deleted once it is not): a deadline of a message held
 * on such a node is not counted as missed, once per delivery and max_attempts times per message. It waits as long again, with its attempt given back,
 * as on one process (broker.ts, behind). A node of an older version passes no NODE: no mark.
 *
 * A node that died is still listed until another forgets it (presence_ttl and a third), and
 * each delivery to it until then counts an attempt. So a last attempt is dead-lettered only
 * once a node it went to has beaten after its deadline; until then it is put off a second at a
 * time, and once every such node is forgotten its attempt is given back and it waits again.
 * (A review's ack_timeout of 0.5 s had dead-lettered all 20 sends to a user whose node was
 * killed, though the user came back on another.)
 * ARGV: P now limit maxAttempts ttlMs [NODE behindMs ackMs mult maxMs [maxDeadLetters maxDeadBytes]]
 * -> {{id, action(route|dead|expired|later), target, freed, deadline(later)}..., count, bytes, deadDropped};
 *    freed: the member whose window an \`any\` it held left, when messages wait for room there
 *    (P wb:, wg:), or the user whose own message left its window to wait again, when its groups'
 *    do (P wg:): PUMP it; else ''
 */
export const SWEEP = `${PRELUDE}
local now, limit, maxAttempts, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local node, behindMs, ackMs, mult, maxMs = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
if node then
  if behindMs > 0 then redis.call('SET', P..'bh:'..node, 1, 'PX', behindMs) else redis.call('DEL', P..'bh:'..node) end
end
-- Whether a node where the message is held is behind: a user's message is held by each of the
-- user's connections, an \`any\` by its holder's.
local function heldBehind(target, holder)
  local user = holder
  if user == '' then
    if string.sub(target, 1, 2) ~= 'u:' then return false end
    user = string.sub(target, 3)
  end
  local presence = redis.call('HGETALL', P..'pu:'..user)
  for i = 1, #presence, 2 do
    if tonumber(presence[i + 1]) > 0 and redis.call('EXISTS', P..'bh:'..presence[i]) == 1 then return true end
  end
  return false
end
-- At a delivery's last attempt, whether a node it went to (hn) was seen alive after its deadline
-- ('seen': the recipient had it and did not ack), none was but one is still listed ('wait': it
-- may have died and not be forgotten yet), or all are forgotten ('gone': they died with it, and
-- the attempt is not the recipient's). A claim without hn (an older node's), or a sweep without
-- the backoff settings: 'seen', as before. The deadline is the claim's (dt and the backoff), not
-- the due time a 'wait' put off.
local function lastAttempt(m, attempts)
  local e = redis.call('HMGET', m, 'hn', 'dt')
  local hn = e[1]
  if not hn or hn == '' or not ackMs or not e[2] then return 'seen' end
  local deadline = tonumber(e[2]) + backoff(attempts, ackMs, mult, maxMs)
  local listed = false
  for held in string.gmatch(hn, '[^,]+') do
    local beat = redis.call('ZSCORE', P..'nodes', held)
    if beat then
      if tonumber(beat) >= deadline then return 'seen' end
      listed = true
    end
  end
  return listed and 'wait' or 'gone'
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P..'due', '-inf', now, 'LIMIT', 0, limit)) do
  local m = P..'m:'..id
  local f = redis.call('HMGET', m, 'state', 'attempts', 'holder', 'target', 'bytes')
  local state = f[1]
  local freed = ''
  local last = state == 'f' and tonumber(f[2]) >= maxAttempts and lastAttempt(m, tonumber(f[2])) or ''
  if not state then
    redis.call('ZREM', P..'due', id)
  elseif state == 'f' and node and heldBehind(f[4], f[3]) and giveback(m, maxAttempts) then
    -- Put off once per delivery and max_attempts times per message: a node that stays behind
    -- (a shard whose ring never drains) must not hold the message for ever.
    local deadline = math.ceil(now + backoff(tonumber(f[2]), ackMs, mult, maxMs))
    redis.call('ZADD', P..'due', deadline, id)
    out[#out + 1] = {id, 'later', f[4], '', deadline}
  elseif last == 'wait' then
    -- Judged again in a second: by then a live node has beaten (every presence_ttl / 3), or a dead one is forgotten.
    local later = math.ceil(now + 1000)
    redis.call('ZADD', P..'due', later, id)
    out[#out + 1] = {id, 'later', f[4], '', later}
  elseif state == 'w' then
    deadletter(id, 'expired: waited '..(ttl / 1000)..' s for a recipient (delivery.ttl)', now)
    out[#out + 1] = {id, 'expired', f[4]}
  else
    if last == 'gone' and giveback(m) then last = '' end
    if state == 'f' then
      loaddec(f[3], tonumber(f[5]))
      redis.call('HSET', m, 'holder', '')
      if f[3] ~= '' and redis.call('EXISTS', P..'wb:'..f[3], P..'wg:'..f[3]) > 0 then freed = f[3] end
    end
    if last ~= '' then
      deadletter(id, 'not acknowledged after '..f[2]..' deliveries (delivery.max_attempts)', now)
      out[#out + 1] = {id, 'dead', f[4], freed}
    else
      if state == 'f' then
        flight(id, f[4], tonumber(f[5]), -1)
        -- A user's own message left its window: its groups' waiting \`any\` messages may fit (P wg:USER).
        if freed == '' and string.sub(f[4], 1, 2) == 'u:' and redis.call('EXISTS', P..'wg:'..string.sub(f[4], 3)) == 1 then freed = string.sub(f[4], 3) end
      else
        scheduled(f[4], -1)
      end
      redis.call('HSET', m, 'state', 'w')
      waits(id, f[4])
      if ttl > 0 then redis.call('ZADD', P..'due', now + ttl, id) else redis.call('ZREM', P..'due', id) end
      out[#out + 1] = {id, 'route', f[4], freed}
    end
  end
end
local added = 0
for _, o in ipairs(out) do if o[2] == 'dead' or o[2] == 'expired' then added = added + 1 end end
local trimmed = trimdead(tonumber(ARGV[11]), tonumber(ARGV[12]), added)
return {out, tonumber(redis.call('GET', P..'count') or '0'), tonumber(redis.call('GET', P..'bytes') or '0'), trimmed}
`;

/**
 * A processor failed on a message: straight to the dead-letter queue.
 * ARGV: P id target from group data pri ts reason now [maxDeadLetters maxDeadBytes] -> dead letters dropped
 */
export const DEAD_ON_ARRIVAL = `${PRELUDE}
local d = P..'d:'..ARGV[2]
unletter(ARGV[2])
redis.call('HSET', d, 'target', ARGV[3], 'from', ARGV[4], 'group', ARGV[5], 'data', ARGV[6], 'pri', ARGV[7], 'ts', ARGV[8],
  'at', 0, 'attempts', 0, 'strategy', '', 'reason', ARGV[9], 'failedAt', ARGV[10], 'bytes', #ARGV[6])
lettered(ARGV[2], #ARGV[6], tonumber(ARGV[10]))
return trimdead(tonumber(ARGV[11]), tonumber(ARGV[12]), 1)
`;
