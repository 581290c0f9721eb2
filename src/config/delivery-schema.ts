/**
 * The websocket.delivery section of the configuration schema (schema.ts): how `send` and `any`
 * messages are acknowledged, retried, bounded and expired, and how `any` picks its recipient.
 * Its own module because it is the largest section and the one with values of its own: the
 * `any` strategies, and the weights' bound that token claims share (src/auth/identity.ts).
 */
import { z } from 'zod';
import { nameMap, positiveInt, seconds, timerSeconds } from './value-types.js';

/**
 * Largest weight for the `weighted` strategy (config or token claim). The pick adds up the
 * weights of a group's members: with weights up to a million, even a million members sum to
 * 1e12, far inside the integers a double holds exactly (2^53), so the shares stay exact; and a
 * million to one is a finer share than any deployment needs. Near 1e308 the sums overflowed
 * to Infinity and NaN, and the group stopped getting messages.
 */
export const MAX_WEIGHT = 1_000_000;

const strategy = z.enum(['round_robin', 'least_connections', 'weighted']);

export const delivery = z
  .object({
    /** Seconds a delivered `send`/`any` message waits for its `ack` before the first redelivery. */
    ack_timeout: timerSeconds.min(0.05).default(10),
    /** Each further wait is the previous one times this (exponential backoff). */
    backoff_multiplier: z.number().finite().min(1).default(2),
    /** Longest wait between two deliveries of one message, seconds. */
    max_backoff: timerSeconds.positive().default(300),
    /**
     * Deliver a `send`/`any` for now to its online recipient while its store commit runs
     * (true), or once it is committed (false). The sender's ack waits for the commit either way.
     * True takes the commit (an fsync with store.sync full) out of the delivery latency; false
     * costs less CPU per message, since deliveries and acks then leave together, one wake-up of
     * each shard per commit instead of two (README, Durable send). A recipient may then hold a
     * message whose commit failed: docs/messaging.md. In cluster mode: the route script goes to
     * Redis right behind the store's (true), or once the store has answered (false); Redis runs
     * them in that order, so a message is delivered only once it is stored either way.
     */
    before_commit: z.boolean().default(true),
    /** Deliveries without an ack before a message moves to the dead-letter queue. */
    max_attempts: positiveInt.max(1000).default(5),
    /** Stored messages per recipient (user, or group for `any`); over it the oldest LOW is dropped. */
    max_pending_per_user: positiveInt.default(10_000),
    /**
     * Stored messages one client may have waiting (over every recipient): without it one
     * sender could fill the store by writing to many users that never connect. The embedding
     * API is not limited by it (the application is trusted).
     */
    max_stored_per_sender: positiveInt.default(10_000),
    /** The same limit in bytes of data: without it one sender's 10,000 messages of 64 KiB would fill most of store.max_bytes for everyone. */
    max_stored_bytes_per_sender: positiveInt.default(64 * 1024 * 1024),
    /** A user's window: deliveries (and their bytes) awaiting its ack at once; the rest wait in order (delivery.ts). */
    max_inflight_per_user: positiveInt.default(10_000),
    max_inflight_bytes_per_user: positiveInt.default(4 * 1024 * 1024),
    /**
     * Seconds a stored message may wait for a recipient, from when it became deliverable (or
     * from its last delivery, if the recipient left without acknowledging it); then it goes to
     * the dead-letter queue. 0 = forever. Users who never come back must not hold the store.
     */
    ttl: seconds.default(7 * 24 * 3600),
    /**
     * Furthest ahead a `send` may be scheduled (`at`), seconds. A far-future `at` would be held
     * (and survive restarts) for nothing; over it the send gets E_BAD_FRAME.
     */
    max_schedule_ahead: seconds.positive().default(30 * 24 * 3600),
    /**
     * Seconds a processor (registerProcessor) may take to answer a message; past it the message
     * is dead-lettered as if the processor had thrown, and its sender answered. 0 = no limit.
     * Without one, a processor that never answers held its sender's answer until the server stopped.
     */
    processor_timeout: timerSeconds.default(30),
    /** `any` strategy for groups without their own and frames without `strategy`. */
    default_strategy: strategy.default('round_robin'),
    /** Per-group `any` strategy, e.g. {support: least_connections}. */
    group_strategies: nameMap(strategy),
    /** Per-user weight for the `weighted` strategy when the token has no `weight` claim (default 1). */
    weights: nameMap(z.number().positive().max(MAX_WEIGHT)),
  })
  .strict();
