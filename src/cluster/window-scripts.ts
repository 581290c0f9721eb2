/**
 * A user's window (delivery.max_inflight_per_user, _bytes_per_user) in the Redis store, and the
 * scripts that deliver to a user through it: ROUTE_USER (one message, live), CONNECT (a
 * connection's backlog; CONNECT_PAGE, the rest of its listing) and PUMP (what fits once an ack
 * made room). Apart from scripts.ts because they share the window's helpers, which no other
 * script needs.
 */
import type { Config } from '../config/schema.js';
import { PRELUDE } from './scripts.js';

/**
 * How long a CONNECT or PUMP that claimed some holds the user for its node at most (pump()
 * below), and a paged listing holds new messages behind it: two command timeouts, in whole
 * milliseconds (SET PX refuses 16100.000000000002, command_timeout 8.05, and with it the script).
 */
export function claimHoldMs(config: Config): number {
  return Math.round(2 * config.cluster.command_timeout * 1000);
}

/**
 * Whether a user's window has room (after PRELUDE): what it holds, and whether one more fits.
 * Also ROUTE_ANY's and PUMP_GROUP's (route-any-script.ts): an \`any\` goes to a member with room.
 */
export const ROOM = `
-- The user's messages in flight and the \`any\` messages it holds, and their bytes (P wf:USER, P
-- load); and how many \`any\` messages it holds (least_connections).
local function inflight(user)
  local w = redis.call('HMGET', P..'wf:'..user, 'n', 'b', 'ab')
  local held = tonumber(redis.call('HGET', P..'load', user) or '0')
  return tonumber(w[1] or '0') + held, tonumber(w[2] or '0') + tonumber(w[3] or '0'), held
end
-- Whether a message of \`size\` bytes fits the window beside n messages of b bytes (one always goes).
local function fits(n, b, size, winCount, winBytes)
  return n == 0 or (n < winCount and b + size <= winBytes)
end
`;

/** PRELUDE and the window's helpers: the user's queue index, the count of what is in flight, and pump(). */
const WINDOW = `${PRELUDE}${ROOM}
-- The user's queue index (P qu:USER waiting, qf:USER in flight, qs:USER scheduled: PRELUDE) is
-- whole when it adds up to the queue; else (a node of an older version wrote the queue, or left
-- the entry of a message gone) it is built again from the queue, once. Before the index, each
-- connection and each pump read the whole queue: 10,000 scheduled messages made every
-- reconnect of their user cost Redis milliseconds, for the whole cluster.
local function indexed(user)
  local q, qu, qf, qs = P..'q:u:'..user, P..'qu:'..user, P..'qf:'..user, P..'qs:'..user
  local total = redis.call('ZCARD', q)
  if total == redis.call('ZCARD', qu) + redis.call('ZCARD', qf) + tonumber(redis.call('GET', qs) or '0') then return end
  redis.call('DEL', qu, qf, qs)
  local all, later = redis.call('ZRANGE', q, 0, -1, 'WITHSCORES'), 0
  for i = 1, #all, 2 do
    local state = redis.call('HGET', P..'m:'..all[i], 'state')
    if state == 'w' then redis.call('ZADD', qu, all[i + 1], all[i])
    elseif state == 'f' then redis.call('ZADD', qf, all[i + 1], all[i])
    elseif state == 's' then later = later + 1
    else redis.call('ZREM', q, all[i]) end
  end
  if later > 0 then redis.call('SET', qs, later) end
end
-- Counts its own again from what is in flight (a node of an older version does not keep P wf:USER n, b),
-- when the count is out of step with the index of what is in flight: n and b move together, so a
-- count in step is taken as right, and a window that is really full costs no read of its messages.
local function recount(user)
  indexed(user)
  if tonumber(redis.call('HGET', P..'wf:'..user, 'n') or '0') == redis.call('ZCARD', P..'qf:'..user) then return inflight(user) end
  local n, b = 0, 0
  for _, id in ipairs(redis.call('ZRANGE', P..'qf:'..user, 0, -1)) do
    n, b = n + 1, b + tonumber(redis.call('HGET', P..'m:'..id, 'bytes') or '0')
  end
  redis.call('HDEL', P..'wf:'..user, 'n', 'b')
  if n > 0 then redis.call('HSET', P..'wf:'..user, 'n', n, 'b', b) end
  return inflight(user)
end
-- The user's window (delivery.max_inflight_per_user, _bytes_per_user): its waiting messages
-- claimed in queue order (P qu:USER) while the window has room beside all those in flight
-- (P wf:USER, wherever they are in the queue: a HIGH one may sort ahead of them), 100 at a time,
-- stopping at the first that does not fit, or after \`limit\` claims (a script runs alone in
-- Redis: 10,000 claimed in one held every node's commands 0.2-0.3 s; the node pumps again).
-- P wb:USER says some still wait: new messages then wait behind them (ROUTE_USER) until an ack,
-- or the node's next pump, takes them.
-- Having claimed some, it holds the user for \`node\` (P wb:USER then names it), \`holdMs\` at
-- most, until that node's next PUMP, which it runs once it has handed these out: they reach
-- their connections from its reply, or as its records, and a message claimed meanwhile by
-- another node's route or pump would come from that node, over another connection, and could
-- overtake them (a chaos review saw 1204-1206 come before 1162-1203: the rescan's PUMP claimed
-- those, the other node routed 1204 at once, and its record came first; and another node's
-- PUMP's records of 1049-1128 came after what the rescan's own PUMP claimed next). Meanwhile
-- new messages wait (ROUTE_USER) and another node's pump claims nothing.
local function pump(user, now, ackMs, mult, maxMs, winCount, winBytes, limit, node, holdMs)
  local wb = P..'wb:'..user
  local holder = redis.call('GET', wb)
  if holder and holder ~= '1' and holder ~= node then return {} end
  indexed(user)
  local qu = P..'qu:'..user
  local claimed = {}
  local held = heldOn(user)
  local count, bytes = inflight(user)
  local waiting = false
  while not waiting do
    -- Each one read leaves P qu (claimed, or not waiting after all) unless the pump stops at it.
    local ids = redis.call('ZRANGE', qu, 0, 99)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      if #claimed >= limit then
        waiting = true
        break
      end
      local size = tonumber(redis.call('HGET', P..'m:'..id, 'bytes') or '0')
      if not fits(count, bytes, size, winCount, winBytes) then
        waiting = true
        break
      end
      local c = claim(id, '', now, ackMs, mult, maxMs, held)
      if c then
        claimed[#claimed + 1] = c
        count, bytes = count + 1, bytes + size
      else
        redis.call('ZREM', qu, id)
      end
    end
  end
  if #claimed > 0 then redis.call('SET', wb, node, 'PX', holdMs)
  elseif waiting then redis.call('SET', wb, 1)
  else redis.call('DEL', wb) end
  return claimed
end
`;

/**
 * A user's message to deliver now, if the user is online on some live node and its window has
 * room (else it waits, and the ack that makes room pumps it).
 * ARGV: P id user now ackMs mult maxBackoffMs aliveSince winCount winBytes [node markMs]
 * (node: the routing node's, marked for markMs as the last it routed to the user, P wl:USER)
 * -> false (nobody online, or no room: it stays waiting) | {nodes, fields} (fields as claim()
 *    returns them, its ack deadline last) | 'pump': messages wait for room that is there (an
 *    ack or a pump that never ran, a dead letter), or wait with no P wb:USER (a CONNECT's hold
 *    that lapsed): the node runs PUMP, which takes them in order, this one too
 */
export const ROUTE_USER = `${WINDOW}
local id, user, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local since = tonumber(ARGV[8])
local nodes = userNodes(user, since)
if #nodes == 0 then return false end
-- It waits behind messages waiting for room, or for room itself (one always goes); a
-- redelivery too: the sweep that put it back took it out of the window, and another message
-- may have taken its place since.
local m = redis.call('HMGET', P..'m:'..id, 'attempts', 'bytes')
if not m[2] then return false end
local near = false
do
  local winCount, winBytes, size = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(m[2])
  local n, b = inflight(user)
  if redis.call('EXISTS', P..'wb:'..user) == 1 then
    if n > 0 then return false end
    return 'pump'
  end
  -- Others wait with no mark to say so: a hold that lapsed (its node died between a reconnect's
  -- CONNECT and its PUMP). They go first, this one in its turn (PUMP takes P qu:USER as the
  -- mark): before, it went ahead of them, and they waited for the user's next connection. No
  -- write here: at maxmemory a script's first write is refused, and a claim's first is a removal.
  local qu = P..'qu:'..user
  if redis.call('ZCARD', qu) > (redis.call('ZSCORE', qu, id) and 1 or 0) then return 'pump' end
  -- Full by the count: counted again before the user is held (the count may be an older
  -- node's), at most once a second (P wr:USER): a recount out of step reads every message in
  -- flight, and a user who acked two and was sent two, over and over, had one run per cycle.
  if not fits(n, b, size, winCount, winBytes) and redis.call('SET', P..'wr:'..user, 1, 'PX', 1000, 'NX') then n, b = recount(user) end
  if not fits(n, b, size, winCount, winBytes) then
    redis.call('SET', P..'wb:'..user, 1)
    return false
  end
  near = 2 * (n + 1) >= winCount or 2 * (b + size) >= winBytes
end
local fields = claim(id, '', now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), table.concat(nodes, ','))
if not fields then return false end
-- The last message each node routed to the user (P wl:USER): a PUMP on another node right after
-- hands out what it claims only once this one's record reached it (PUMP below). Only once the
-- window is half full, where a PUMP may follow within a record's way (a route costs two writes
-- more, about 1.4 us of Redis's time). After the claim: at maxmemory only a script's first write is refused.
if near and ARGV[11] then
  redis.call('HSET', P..'wl:'..user, ARGV[11], id)
  redis.call('PEXPIRE', P..'wl:'..user, ARGV[12])
end
return {nodes, fields}
`;

/**
 * A connection of \`user\` opened on \`node\`: its presence is written and, in the same atomic
 * step, what waits for the user is listed: waiting messages are claimed as the user's window
 * allows (pump(); to go to every connection of the user, on the nodes returned), messages
 * already in flight are for this new connection only. Any route that runs after this script
 * sees the new presence; any before it left its message in flight or waiting, which is listed
 * or pumped here: none is missed, none doubled.
 * Over maxConnections (0: no cap) with the user's connections on the other live nodes, the
 * connection is refused instead, and nothing is written or claimed.
 * The messages in flight are listed only if they are at most `resend` (the node's ResendBudget:
 * a user reconnecting in a loop with a window of 10,000 would have Redis read them all back at
 * every connection). Else none is, nor is anything claimed: they reach it at their ack
 * deadlines, and what waits goes at the user's next ack or ahead of its next message (it may
 * come before them). At most `listed` are listed here (one listing of
 * 10,000 held Redis 80 ms): with more, `more` is where CONNECT_PAGE goes on, and nothing is
 * claimed (it would reach the connection ahead of the rest of the listing); P wb:USER then
 * holds new messages behind what waits, for the node's PUMP after the last page, for `holdMs`
 * at most (unless a full window holds it already): a node that dies before its PUMP must not
 * leave the user's new messages held until an ack. What waits once it lapsed is pumped by the
 * user's next ack or ahead of its next message (ROUTE_USER, ACKS and PUMP see P qu:USER). At most `claims` waiting messages are
 * claimed (pump()); having claimed any, the node runs PUMP after (pump() holds the user for it
 * until then, for `holdMs` at most); none while another node's claims are on their way.
 * ARGV: P node user now ackMs mult maxBackoffMs aliveSince connectionsOnNode winCount winBytes maxConnections resend claims listed holdMs
 * -> {nodes, pendingCount, more, entries...} entry: {claimed 1|0, fields...} (fields end with
 *    the ack deadline); more: 0, or {score of the last listed, score of the last in flight} |
 *    {'cap', connections the user holds already}
 */
export const CONNECT = `${WINDOW}
local node, user, now, since = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[8])
local cap, here = tonumber(ARGV[12] or '0'), tonumber(ARGV[9])
if cap > 0 then
  local held = here - 1
  local counts = redis.call('HGETALL', P..'pu:'..user)
  for i = 1, #counts, 2 do
    if counts[i] ~= node and alive(counts[i], since) then held = held + tonumber(counts[i + 1]) end
  end
  if held >= cap then return {'cap', held} end
end
redis.call('HSET', P..'pu:'..user, node, here)
redis.call('SADD', P..'nk:'..node, P..'pu:'..user)
local nodes = userNodes(user, since)
local out = {nodes, 0, 0}
indexed(user)
local qf = P..'qf:'..user
local flying = redis.call('ZCARD', qf)
local waiting = redis.call('ZCARD', P..'qu:'..user)
local pending, n, b = waiting + flying, 0, 0
local over = flying > tonumber(ARGV[13])
local first = 0
if not over then first = math.min(flying, tonumber(ARGV[15])) end
if first > 0 then
  local listed = redis.call('ZRANGE', qf, 0, first - 1, 'WITHSCORES')
  for i = 1, #listed, 2 do
    local id = listed[i]
    local f = redis.call('HMGET', P..'m:'..id, 'from', 'group', 'data', 'pri', 'ts', 'attempts', 'bytes')
    local deadline = tonumber(redis.call('ZSCORE', P..'due', id) or '0')
    out[#out + 1] = {0, {id, f[1], f[2], f[3], f[4], f[5], f[6], math.ceil(deadline)}}
    n, b = n + 1, b + tonumber(f[7] or '0')
  end
  -- Scores are unique (their seq), so the last one listed says where the next page starts; the
  -- last in flight now, where the listing ends: what is claimed later reaches the connection as
  -- any delivery does, and a steady sender cannot keep the pages going.
  if first < flying then
    out[3] = {listed[#listed], redis.call('ZRANGE', qf, -1, -1, 'WITHSCORES')[2]}
    if waiting > 0 then redis.call('SET', P..'wb:'..user, 1, 'NX', 'PX', tonumber(ARGV[16] or '10000')) end
  end
end
-- The window's count of its own set from what was just seen whole (a node of an older version does not keep it).
if n == flying then
  redis.call('HDEL', P..'wf:'..user, 'n', 'b')
  if n > 0 then redis.call('HSET', P..'wf:'..user, 'n', n, 'b', b) end
end
-- What waits goes as the window allows (before it, a backlog of 600 MB was claimed and returned in one reply).
if not over and out[3] == 0 then
  for _, c in ipairs(pump(user, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[14]), node, tonumber(ARGV[16] or '10000'))) do
    out[#out + 1] = {1, c}
  end
end
out[2] = pending
return out
`;

/**
 * Room came in a user's window (an ack, a dead letter) while some of its messages wait for it
 * (P wb:USER): claims what now fits, at most \`claims\`; having claimed any, \`node\` pumps again
 * once it has handed them out (pump() holds the user for it until then, \`holdMs\` at most),
 * and claims nothing while another node's claims are on their way.
 * With ARGV[10] 1, also counts the groups whose \`any\` messages waited for room in this user's
 * window (P wg:USER), for the node to offer them what room is left (PUMP_MARKED), after the user's
 * own; not their names (a user may be marked in thousands).
 * Having claimed any, also lists the last message each other node routed to the user (ROUTE_USER's
 * P wl:USER) within markMs and still in flight: the node hands these out behind those records.
 * ARGV: P user now ackMs mult maxBackoffMs aliveSince winCount winBytes groups(1|0) claims holdMs node [markMs]
 * -> false (none waits, or the user is not online and has no such group) | {nodes, {fields...}, marked groups, routed ids}
 */
export const PUMP = `${WINDOW}
local user, now = ARGV[2], tonumber(ARGV[3])
local groups = 0
if ARGV[10] == '1' then groups = redis.call('SCARD', P..'wg:'..user) end
local nodes = {}
-- Its messages wait with or without the mark (a CONNECT's hold lapses: ROUTE_USER).
if redis.call('EXISTS', P..'wb:'..user) == 1 or redis.call('ZCARD', P..'qu:'..user) > 0 then nodes = userNodes(user, tonumber(ARGV[7])) end
if #nodes == 0 then
  if groups == 0 then return false end
  return {{}, {}, groups}
end
local claimed = pump(user, now, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[11]), ARGV[13], tonumber(ARGV[12]))
-- The last message each other node routed to the user within markMs, still in flight: its record
-- may still be on its way, and what this claimed would overtake it (the window filled between).
local routed, markMs = {}, tonumber(ARGV[14] or '0')
if #claimed > 0 and markMs > 0 then
  local marks = redis.call('HGETALL', P..'wl:'..user)
  for i = 1, #marks, 2 do
    if marks[i] ~= ARGV[13] then
      local m = redis.call('HMGET', P..'m:'..marks[i + 1], 'state', 'dt')
      if m[1] == 'f' and now - tonumber(m[2] or '0') < markMs then routed[#routed + 1] = marks[i + 1] end
    end
  end
end
return {nodes, claimed, groups, routed}
`;

/**
 * The next page of the messages in flight a new connection is handed (CONNECT listed the first):
 * at most `count` of P qf:USER, scored past `after` up to `last`, as CONNECT lists them. Reads
 * only: a message acknowledged or swept back to waiting meanwhile is no longer there, one
 * claimed again is there once (the node hands the connection each id once).
 * ARGV: P user after last count
 * -> {next, entries...} entry: {0, fields...} as CONNECT's; next: the score of the last listed
 *    when the page was full (there may be more), else 0
 */
export const CONNECT_PAGE = `
local P, user, count = ARGV[1], ARGV[2], tonumber(ARGV[5])
local listed = redis.call('ZRANGEBYSCORE', P..'qf:'..user, '('..ARGV[3], ARGV[4], 'WITHSCORES', 'LIMIT', 0, count)
local out = {0}
for i = 1, #listed, 2 do
  local id = listed[i]
  local f = redis.call('HMGET', P..'m:'..id, 'from', 'group', 'data', 'pri', 'ts', 'attempts')
  -- An index entry a node of an older version left behind its message: nothing to hand over.
  if f[3] then
    local deadline = tonumber(redis.call('ZSCORE', P..'due', id) or '0')
    out[#out + 1] = {0, {id, f[1], f[2], f[3], f[4], f[5], f[6], math.ceil(deadline)}}
  end
end
if #listed == 2 * count and listed[#listed] ~= ARGV[4] then out[1] = listed[#listed] end
return out
`;

/**
 * Which of the messages a new connection's listing named in its earlier scripts (CONNECT, then
 * CONNECT_PAGE) are no longer in flight to `user`: acknowledged (through any node), swept back to
 * waiting or dead since. The node hands the listing out only after its last page, and a page
 * reads only its own range: before this, one acknowledged meanwhile reached the new connection.
 * Reads only.
 * ARGV: P user ids... -> the ids not in P qf:USER
 */
export const CONNECT_GONE = `
local qf, gone = ARGV[1]..'qf:'..ARGV[2], {}
for i = 3, #ARGV do
  if not redis.call('ZSCORE', qf, ARGV[i]) then gone[#gone + 1] = ARGV[i] end
end
return gone
`;
