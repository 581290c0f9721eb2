/**
 * What the broker keeps about groups besides their members for `any`: their history
 * (history.ts, persisted by src/store/history-store.ts with history.persist), who is in them
 * (group-presence.ts) and the answers about them (group-requests.ts). This module builds and
 * runs them: it loads the persisted history at start, expires messages past their ttl once a
 * second while any is kept (an idle broker sets no timer), and writes the clean mark at stop.
 */
import type { Config } from '../config/schema.js';
import { presenceTopic } from '../link/records.js';
import { HistoryPatterns } from '../shared/history-patterns.js';
import { HistoryStore } from '../store/history-store.js';
import type { MessageStore } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import { OnDemandTimer } from '../util/on-demand-timer.js';
import { replayBytesOf } from './answer-budget.js';
import { GroupPresence } from './group-presence.js';
import { GroupRequests } from './group-requests.js';
import { History } from './history.js';
import type { ShardLink } from './shard-link.js';

export interface BrokerGroupsOptions {
  config: Config;
  /** null: history is kept in memory only, whatever history.persist says. */
  store: MessageStore | null;
  /** This process run (the owner mark of persisted history). */
  instance: string;
  link: ShardLink;
  log: Logger;
}

/** How often messages past their ttl are dropped (each group also drops its own when used). */
const SWEEP_MS = 1000;

export class BrokerGroups {
  readonly presence: GroupPresence;
  /** null: no group keeps history. */
  readonly history: History | null;
  readonly requests: GroupRequests;
  private readonly persistence: HistoryStore | null;
  private readonly patterns: HistoryPatterns;
  /** Armed only while some kept message has a ttl: an idle broker sets no timer for it. */
  private readonly sweepTimer = new OnDemandTimer(() => this.sweep());

  constructor(
    private readonly options: BrokerGroupsOptions,
    hasMembers: (group: string) => boolean,
  ) {
    const { config, store, link } = options;
    const ws = config.websocket;
    this.presence = new GroupPresence({
      maxList: ws.presence.max_list,
      windowMs: ws.presence.window * 1000,
      maxFrameBytes: link.maxFrameBytes,
      emit: (group, frame) => link.groupPub(presenceTopic(group), frame),
    });
    const patterns = (this.patterns = new HistoryPatterns(ws.history));
    this.persistence = patterns.any && config.history.persist && store !== null ? HistoryStore.open(store, options.instance) : null;
    if (this.persistence === null && store !== null) {
      void HistoryStore.disown(store, options.instance).then((written) => {
        if (!written) options.log.warn('could not mark the stored group history as out of date: a later run with history.persist may offer recovery across this one');
      });
    }
    this.history = patterns.any
      ? new History({ patterns, limits: config.history, persistence: this.persistence, hasMembers, onExpiring: () => this.armSweep() })
      : null;
    this.requests = new GroupRequests({
      history: this.history,
      presence: this.presence,
      link,
      batchSize: ws.performance.batch_size,
      // A replay bigger than a client may have waiting would make it a slow consumer (1013).
      maxReplayBytes: replayBytesOf(config),
      maxPage: config.history.max_page,
    });
  }

  /** Loads the persisted history (before any record is read), and starts expiring. */
  start(): void {
    const { history, persistence } = this;
    if (history === null) return;
    if (persistence !== null) {
      const { patterns } = this;
      const { clean, groups } = persistence.load(
        (group) => patterns.keeps(group),
        (group) => patterns.ruleOf(group)?.size ?? 0,
      );
      history.restore(groups);
      if (groups.length > 0) {
        const log = this.options.log;
        if (clean) log.info({ groups: groups.length }, 'group history loaded from the store');
        else log.warn({ groups: groups.length }, 'group history loaded from the store after an unclean stop, or while another process runs on it: every group has a new epoch (clients reload)');
      }
    }
    this.armSweep();
  }

  /** History is kept in the store (history.persist): a standing-by process waits for it (history-hold.ts). */
  get persistent(): boolean {
    return this.persistence !== null;
  }

  /** Whether `group` keeps history (websocket.history). */
  keeps(group: string): boolean {
    return this.patterns.any && this.patterns.keeps(group);
  }

  /** Whether the ttl sweep is armed. */
  get sweeping(): boolean {
    return this.sweepTimer.armed;
  }

  /** While armed, a message is dropped at most SWEEP_MS after its ttl, as by a sweep that always ran. */
  private armSweep(): void {
    if (this.history?.hasExpiring === true) this.sweepTimer.arm(SWEEP_MS);
  }

  private sweep(): void {
    this.history?.sweep();
    this.armSweep();
  }

  /**
   * The store's lease is ours now (Broker.takeOver): the process that held it (a pm2 reload's
   * old one) went on writing its groups' states while both ran, each under its own epochs, so
   * the last write of a group may be its. Ours are written again, and the owner mark: the store
   * holds the history of the process that goes on.
   */
  tookOver(): void {
    if (this.history !== null && this.persistence !== null) this.persistence.reclaim(this.history.states());
  }

  /** Stops the timers; with persistence, marks the stored history clean once written, if this process held the store (`holder`). */
  async stop(holder: boolean): Promise<void> {
    this.sweepTimer.stop();
    this.presence.stop();
    await this.persistence?.close(holder);
  }
}
