/**
 * RECLAIM: what a claim took when its answer never reached the node (a script that timed out
 * but ran) is made due at once, rather than at its ack deadline. Apart from scripts.ts (which
 * keeps the indexes it reads: P qf:USER, P qd:GROUP) because only the timeout follow-ups run it.
 */
import { PRELUDE } from './scripts.js';

/**
 * Claims whose answer was lost: ROUTE_USER, ROUTE_ANY, PUMP or CONNECT timed out on the node
 * but ran, so the messages it claimed (at \`dt\`, which claim() wrote) are in flight and
 * delivered to nobody. Each of \`target\`'s messages (only \`id\`, when given) still in flight
 * from that claim is made due now with its attempt given back: the sweep routes it again at
 * once instead of at its ack deadline. A message claimed again since has another \`dt\`.
 * ARGV: P target dt now id('' : any of the target's) -> how many
 */
export const RECLAIM = `${PRELUDE}
local target, dt, now, only = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
-- Not the whole queue: a user's in flight (P qf:USER), a group's claimed at dt (P qd:GROUP).
local kind, ids = string.sub(target, 1, 2), {only}
if only ~= '' then
elseif kind == 'u:' then ids = redis.call('ZRANGE', P..'qf:'..string.sub(target, 3), 0, -1)
elseif kind == 'g:' then ids = redis.call('ZRANGEBYSCORE', P..'qd:'..string.sub(target, 3), dt, dt)
else ids = redis.call('ZRANGE', P..'q:'..target, 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  local m = P..'m:'..id
  local f = redis.call('HMGET', m, 'state', 'dt', 'target')
  if f[1] == 'f' and f[3] == target and tonumber(f[2] or '0') == dt then
    giveback(m)
    redis.call('ZADD', P..'due', now, id)
    n = n + 1
  end
end
return n
`;
