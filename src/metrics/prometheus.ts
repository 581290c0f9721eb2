/**
 * The /metrics document: Prometheus text exposition format 0.0.4, rendered by the primary once
 * per interval. Latency histograms are the merged since-start HDR histograms read into fixed
 * `le` buckets (cumulative, as Prometheus wants), with _sum (from the HDR mean) and _count;
 * counters and gauges carry a `shard` (or `thread`) label where one shard's value means
 * something. Labels never hold user ids, group names or message content.
 */
import type { HistoryStats } from '../broker/history.js';
import { ErrorCodes, type ErrorCode } from '../protocol/errors.js';
import { COUNTERS, errorCounter, type CounterName, type MessagingCounterName } from '../shared/shard-counters.js';
import type { MetricsView } from './hub.js';
import { LATENCY_HELP, type LatencyName } from './latencies.js';
import { PRIMARY_THREAD } from './report.js';

/** `le` bounds of every latency histogram, seconds: 50 µs .. 10 s in 1-2-5 steps (100 and 200 ms are the alert thresholds). */
export const BUCKETS_S = [0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];
export const BUCKETS_US = BUCKETS_S.map((s) => Math.round(s * 1e6));

export const HISTOGRAM_NAMES: Record<LatencyName, string> = {
  pub: 'ocs_pub_latency_seconds',
  send: 'ocs_send_latency_seconds',
  ack: 'ocs_ack_latency_seconds',
  ping: 'ocs_ping_rtt_seconds',
  event_loop: 'ocs_event_loop_delay_seconds',
  commit: 'ocs_commit_latency_seconds',
};

/** Per-shard counters of the shard table as Prometheus counters (the rest are rendered below by hand). */
const SHARD_COUNTERS: ReadonlyArray<[CounterName, string, string]> = [
  ['connections_opened', 'ocs_connections_opened_total', 'WebSocket connections opened'],
  ['connections_closed', 'ocs_connections_closed_total', 'WebSocket connections closed'],
  ['frames_in', 'ocs_frames_received_total', 'Client frames received'],
  ['bytes_in', 'ocs_received_bytes_total', 'Bytes of client frames received'],
  ['bytes_out', 'ocs_sent_bytes_total', 'Bytes of message frames (msg, batch) handed to uWS, per recipient, as sent (a binary frame compressed or not)'],
  ['deliveries', 'ocs_deliveries_total', 'Message frames handed to uWS, per recipient'],
  ['pubs', 'ocs_pubs_total', 'Group messages published by clients of the shard'],
  ['ring_forwarded', 'ocs_ring_forwarded_total', 'Records pushed to the rings to other shards'],
  ['ring_received', 'ocs_ring_received_total', 'Records read from the rings from other shards'],
  ['ring_full', 'ocs_ring_full_total', 'Records that found their ring full and waited in its overflow queue'],
  ['ring_overloaded', 'ocs_ring_overloaded_total', 'Pubs refused with E_OVERLOADED because a ring and its overflow were full'],
  ['slow_consumers_closed', 'ocs_slow_consumers_closed_total', 'Connections closed as slow consumers (1013)'],
  ['ring_refused', 'ocs_ring_refused_total', 'Records a ring writer refused: never fit the ring, or over its overflow bound'],
  ['binary_opened', 'ocs_binary_connections_opened_total', 'Connections opened with ocs.v1.msgpack'],
  ['binary_closed', 'ocs_binary_connections_closed_total', 'Connections with ocs.v1.msgpack closed'],
  ['codec_offloaded', 'ocs_codec_offloaded_total', 'Codec tasks handed to the codec pool: large frames decoded, msgpack backlogs encoded'],
  ['codec_inline_full', 'ocs_codec_inline_full_total', 'Codec tasks large enough for the pool that ran inline because it was full'],
];

const REFUSALS: ReadonlyArray<[CounterName, string]> = [
  ['connections_rejected', 'max_connections'],
  ['refused_unauthorized', 'unauthorized'],
  ['refused_protocol', 'subprotocol'],
  ['refused_stopping', 'stopping'],
  ['ip_refused_rate', 'ip_rate'],
  ['ip_refused_unauthenticated', 'ip_unauthenticated'],
  ['ip_refused_connections', 'ip_connections'],
  ['ip_refused_table_full', 'ip_table_full'],
];

const HTTP_REFUSALS: ReadonlyArray<[CounterName, string]> = [
  ['http_refused_rate', 'ip_rate'],
  ['http_refused_table_full', 'ip_table_full'],
];

const BROKER_COUNTERS: ReadonlyArray<[MessagingCounterName, string]> = [
  ['accepted', 'stored send/any messages accepted'],
  ['delivered', 'deliveries of stored messages'],
  ['redelivered', 'deliveries after the first, for want of an ack'],
  ['acked', 'stored messages acknowledged'],
  ['dead_lettered', 'messages moved to the dead-letter queue'],
  ['dropped_low', 'LOW messages dead-lettered to make room in a full queue'],
  ['queue_full', 'send/any refused with E_QUEUE_FULL'],
  ['expired', 'waiting messages dead-lettered after delivery.ttl'],
  ['store_unavailable', 'send/any refused with E_STORE_UNAVAILABLE'],
  ['link_too_large', 'records to a shard refused because no ring could carry them'],
  ['link_deferred', 'deliveries left to their ack timers while a ring to a shard was backed up'],
  ['link_dropped', 'group messages (and past twice the bound other records) dropped while a ring to a shard was backed up'],
  ['link_discarded', 'records not written because their shard was not up'],
  ['dead_dropped', 'dead letters dropped, oldest first, to keep store.max_dead_letters and max_dead_letter_bytes'],
];

/** Group history's figures (HistoryStats), rendered only where some group keeps history. */
const HISTORY_FAMILIES: ReadonlyArray<[keyof HistoryStats, string, 'counter' | 'gauge', string]> = [
  ['groups', 'ocs_history_groups', 'gauge', 'groups whose history is kept now (at most history.max_groups)'],
  ['messages', 'ocs_history_messages', 'gauge', 'messages kept in group history now'],
  ['bytes', 'ocs_history_bytes', 'gauge', 'bytes of the messages kept in group history now (at most history.max_bytes)'],
  ['groups_forgotten', 'ocs_history_groups_forgotten_total', 'counter', 'group histories forgotten to make room for another (history.max_groups); their epochs change'],
  ['evicted_for_bytes', 'ocs_history_messages_evicted_total', 'counter', 'history messages pushed out by history.max_bytes'],
  ['expired', 'ocs_history_messages_expired_total', 'counter', "history messages dropped past their group's ttl"],
];

/** `percentile` label values (not `quantile`: Prometheus keeps that label for summaries). */
const PERCENTILES: ReadonlyArray<[string, 'p50' | 'p90' | 'p95' | 'p99' | 'p999' | 'max']> = [
  ['50', 'p50'],
  ['90', 'p90'],
  ['95', 'p95'],
  ['99', 'p99'],
  ['99.9', 'p999'],
  ['100', 'max'],
];

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): this {
    this.lines.push(`# HELP ${name} ${NEEDS_ESCAPE.test(help) ? help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n') : help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, labels: Record<string, string | number> | null, value: number): this {
    let text = '';
    if (labels !== null) {
      for (const key in labels) text += `${text === '' ? '{' : ','}${key}="${escapeLabel(String(labels[key]))}"`;
      text += '}';
    }
    this.lines.push(`${name}${text} ${formatValue(value)}`);
    return this;
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

export function renderPrometheus(view: MetricsView): string {
  const out = new Exposition();
  out.family('ocs_build_info', 'gauge', 'Always 1; the server version is a label').sample('ocs_build_info', { version: view.version }, 1);
  out.family('ocs_uptime_seconds', 'gauge', 'Seconds since the server started').sample('ocs_uptime_seconds', null, (view.at - view.startedAt) / 1000);

  for (const latency of view.latency) {
    const name = HISTOGRAM_NAMES[latency.name];
    const counts = latency.buckets;
    out.family(name, 'histogram', `${LATENCY_HELP[latency.name]}; merged over threads since start`);
    BUCKETS_S.forEach((le, i) => out.sample(`${name}_bucket`, { le: String(le) }, counts[i]!));
    out.sample(`${name}_bucket`, { le: '+Inf' }, counts[BUCKETS_S.length]!);
    out.sample(`${name}_sum`, null, (latency.total.mean * latency.total.count) / 1e6);
    out.sample(`${name}_count`, null, latency.total.count);
  }
  out.family('ocs_latency_percentile_seconds', 'gauge', 'Percentiles of the merged latency histograms, over the last interval and since start');
  for (const latency of view.latency) {
    for (const [window, summary] of [['interval', latency.interval], ['since_start', latency.total]] as const) {
      for (const [percentile, key] of PERCENTILES) out.sample('ocs_latency_percentile_seconds', { latency: latency.name, window, percentile }, summary[key] / 1e6);
    }
  }

  for (const [counter, name, help] of SHARD_COUNTERS) {
    out.family(name, 'counter', help);
    for (const shard of view.shards) out.sample(name, { shard: shard.shard }, shard.counters[counter]);
  }
  out.family('ocs_connections_refused_total', 'counter', 'WebSocket upgrades refused, by reason');
  for (const shard of view.shards) for (const [counter, reason] of REFUSALS) out.sample('ocs_connections_refused_total', { shard: shard.shard, reason }, shard.counters[counter]);
  out.family('ocs_http_requests_refused_total', 'counter', 'HTTP requests other than WebSocket upgrades refused, by reason: ip_rate (429, over limits.http_requests_per_ip), ip_table_full (503)');
  for (const shard of view.shards) for (const [counter, reason] of HTTP_REFUSALS) out.sample('ocs_http_requests_refused_total', { shard: shard.shard, reason }, shard.counters[counter]);
  out.family('ocs_errors_total', 'counter', 'Errors by ocs.v1 error code (err frames sent and refusals)');
  for (const shard of view.shards) {
    for (const code of Object.keys(ErrorCodes) as ErrorCode[]) out.sample('ocs_errors_total', { shard: shard.shard, code }, shard.counters[COUNTERS[errorCounter[code]]!]);
  }
  out.family('ocs_shard_restarts_total', 'counter', 'Times the primary restarted the shard after it died');
  for (const shard of view.shards) out.sample('ocs_shard_restarts_total', { shard: shard.shard }, shard.restarts);
  out.family('ocs_shard_up', 'gauge', '1 while the shard is up');
  for (const shard of view.shards) out.sample('ocs_shard_up', { shard: shard.shard }, shard.status === 'up' ? 1 : 0);
  out.family('ocs_connections', 'gauge', 'Open WebSocket connections');
  for (const shard of view.shards) out.sample('ocs_connections', { shard: shard.shard }, shard.connections);
  out.family('ocs_connections_peak', 'gauge', 'Most connections the shard held at once since the server started');
  for (const shard of view.shards) out.sample('ocs_connections_peak', { shard: shard.shard }, shard.peak_connections);
  out.family('ocs_server_connections_peak', 'gauge', 'Most connections the server held at once since it started').sample('ocs_server_connections_peak', null, view.peakConnections);
  out.family('ocs_connections_limit', 'gauge', 'websocket.server.max_connections').sample('ocs_connections_limit', null, view.maxConnections);
  out.family('ocs_ring_fill_ratio', 'gauge', "Bytes waiting in a shard's rings over their capacity (to_shards: the fullest of its rings to other shards)");
  for (const ring of view.rings) {
    out.sample('ocs_ring_fill_ratio', { shard: ring.shard, ring: 'to_shards' }, ring.toShards);
    out.sample('ocs_ring_fill_ratio', { shard: ring.shard, ring: 'to_broker' }, ring.toBroker);
    out.sample('ocs_ring_fill_ratio', { shard: ring.shard, ring: 'from_broker' }, ring.fromBroker);
  }

  for (const [key, help] of BROKER_COUNTERS) {
    out.family(`ocs_messages_${key}_total`, 'counter', `Broker: ${help}`).sample(`ocs_messages_${key}_total`, null, view.broker[key]);
  }
  out.family('ocs_messages_stored', 'gauge', 'Broker: stored messages not yet acknowledged or dead-lettered (the queue depth)').sample('ocs_messages_stored', null, view.depth.stored);
  out.family('ocs_messages_stored_bytes', 'gauge', 'Broker: bytes of data of the messages held now').sample('ocs_messages_stored_bytes', null, view.broker.stored_bytes);
  out.family('ocs_messages_inflight', 'gauge', 'Broker: delivered messages awaiting their ack').sample('ocs_messages_inflight', null, view.depth.inflight);
  out.family('ocs_messages_pending', 'gauge', 'Broker: stored messages not yet delivered (recipient offline, or scheduled)').sample('ocs_messages_pending', null, view.depth.stored - view.depth.inflight);
  const disk = view.disk;
  if (disk !== null) {
    out.family('ocs_store_file_bytes', 'gauge', "Store: data.mdb's size").sample('ocs_store_file_bytes', null, disk.fileBytes);
    out.family('ocs_store_reserved_bytes', 'gauge', 'Store: disk blocks held past data.mdb for its next writes, which a full disk cannot take').sample('ocs_store_reserved_bytes', null, disk.reservedBytes);
    out.family('ocs_store_fs_size_bytes', 'gauge', 'Store: size of the file system holding store.data_dir').sample('ocs_store_fs_size_bytes', null, disk.fsBytes);
    out.family('ocs_store_fs_free_bytes', 'gauge', 'Store: free space of that file system for the server').sample('ocs_store_fs_free_bytes', null, disk.fsFreeBytes);
  }
  const history = view.history;
  if (history !== null) for (const [key, name, type, help] of HISTORY_FAMILIES) out.family(name, type, `Broker: ${help}`).sample(name, null, history[key]);

  const r = view.resources;
  out.family('ocs_process_cpu_seconds_total', 'counter', 'User and system CPU time of the process, all threads').sample('ocs_process_cpu_seconds_total', null, r.cpuSeconds);
  out.family('ocs_process_cpu_ratio', 'gauge', 'CPU time over the last interval / (interval x CPUs the process may use)').sample('ocs_process_cpu_ratio', null, r.cpuRatio);
  out.family('ocs_process_cpu_limit', 'gauge', 'CPUs the process may use: the CPUs it may run on, or its cgroup quota when smaller').sample('ocs_process_cpu_limit', null, r.cpuLimit);
  out.family('ocs_process_resident_memory_bytes', 'gauge', 'Resident set size of the process').sample('ocs_process_resident_memory_bytes', null, r.rssBytes);
  out.family('ocs_process_memory_limit_bytes', 'gauge', 'The cgroup memory limit, else the host memory').sample('ocs_process_memory_limit_bytes', null, r.memoryLimitBytes);
  out.family('ocs_process_memory_ratio', 'gauge', 'Resident memory over the memory limit').sample('ocs_process_memory_ratio', null, r.memoryRatio);
  out.family('ocs_thread_heap_used_bytes', 'gauge', 'V8 heap in use, per thread');
  for (const t of view.threads) out.sample('ocs_thread_heap_used_bytes', { thread: threadName(t.thread) }, t.heapUsed);
  out.family('ocs_thread_heap_total_bytes', 'gauge', 'V8 heap allocated, per thread');
  for (const t of view.threads) out.sample('ocs_thread_heap_total_bytes', { thread: threadName(t.thread) }, t.heapTotal);
  out.family('ocs_thread_event_loop_utilization_ratio', 'gauge', 'Share of the last interval the thread spent running (performance.eventLoopUtilization)');
  for (const t of view.threads) out.sample('ocs_thread_event_loop_utilization_ratio', { thread: threadName(t.thread) }, t.utilization);
  const measured = view.threads.filter((t) => t.cpuSeconds >= 0);
  if (measured.length > 0) {
    out.family('ocs_thread_cpu_seconds_total', 'counter', "CPU time of the thread itself since it started (Linux's /proc/thread-self/schedstat)");
    for (const t of measured) out.sample('ocs_thread_cpu_seconds_total', { thread: threadName(t.thread) }, t.cpuSeconds);
    out.family('ocs_thread_cpu_ratio', 'gauge', 'CPU time of the thread over the last interval / the interval (1: a whole core)');
    for (const t of measured) out.sample('ocs_thread_cpu_ratio', { thread: threadName(t.thread) }, t.cpuRatio);
  }

  out.family('ocs_alert_active', 'gauge', '1 while the alert is raised (monitoring.alerts)');
  for (const a of view.alerts.statuses) out.sample('ocs_alert_active', { alert: a.alert }, a.active ? 1 : 0);
  out.family('ocs_alert_value', 'gauge', "The alert's value at the last check, in its unit (ms, %, messages)");
  for (const a of view.alerts.statuses) out.sample('ocs_alert_value', { alert: a.alert }, a.value);
  out.family('ocs_alert_threshold', 'gauge', "The alert's threshold, in its unit");
  for (const a of view.alerts.statuses) out.sample('ocs_alert_threshold', { alert: a.alert }, a.threshold);
  out.family('ocs_alerts_raised_total', 'counter', 'Times the alert was raised');
  for (const a of view.alerts.statuses) out.sample('ocs_alerts_raised_total', { alert: a.alert }, a.raised);
  return out.toString();
}

export function threadName(thread: number): string {
  return thread === PRIMARY_THREAD ? 'primary' : `shard${thread}`;
}

/** A help text or label value with a character the exposition format escapes; most have none (a render is once per interval, on the broker's thread). */
const NEEDS_ESCAPE = /[\\"\n]/;

function escapeLabel(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}
