/**
 * ACKS: the acks a node read from its rings in one pass, settled in one script. One script per
 * id had let a connection sending `ack` frames of 16 made-up ids at its rate limit cost Redis
 * 1,600 scripts a second; now it is one a frame at most, and fewer when frames arrive together.
 */
import { PRELUDE } from './scripts.js';

/** The most acks one ACKS script settles: Redis runs a script alone, so a batch stays short. */
export const ACKS_PER_SCRIPT = 64;

/**
 * An \`ack\` of \`id\` by \`user\`, for each pair: only a message in flight, to that user (or held
 * by that user, for an \`any\`), or the user's own message waiting again after a delivery, is
 * settled. ARGV: P id1 user1 id2 user2 ... -> per pair, in
 * order, 0 (unknown, not in flight, or not the user's) or {the delivery time (epoch ms), 1 when
 * the user's window (which an \`any\` it held was in too) has messages waiting for room: its own
 * (P wb:USER, or P qu:USER without it: a CONNECT's hold that lapsed) or its groups' \`any\`
 * messages (P wg:USER); the node runs PUMP}. (0, not false: a
 * nil would end the Lua array there.)
 */
export const ACKS = `${PRELUDE}
local out = {}
for i = 2, #ARGV - 1, 2 do
  local id, user = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', P..'m:'..id, 'state', 'target', 'group', 'holder', 'dt', 'attempts')
  local mine
  if f[1] == 'f' then
    if f[3] == '' then mine = f[2] == 'u:'..user else mine = f[4] == user end
  else
    -- A user's own message that went back to waiting at its deadline after a delivery, whose ack
    -- came just after (before its next delivery): it was received. Refused, it went out again to
    -- the same connection within milliseconds (a review's chaos runs).
    mine = f[1] == 'w' and f[3] == '' and f[2] == 'u:'..user and tonumber(f[6] or '0') >= 1
  end
  if mine then
    forget(id)
    out[#out + 1] = {f[5] or '0', math.min(1, redis.call('EXISTS', P..'wb:'..user, P..'wg:'..user) + redis.call('ZCARD', P..'qu:'..user))}
  else
    out[#out + 1] = 0
  end
end
return out
`;
