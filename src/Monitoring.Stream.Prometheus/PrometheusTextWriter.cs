using System.Globalization;
using System.Text;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus;

/// <summary>
/// Writes the engine's self-metrics (<see cref="PipelineMetrics"/>) and a remote-write sink's counters in the
/// Prometheus text exposition format 0.0.4, for a <c>/metrics</c> endpoint that Prometheus scrapes.
/// </summary>
public static class PrometheusTextWriter
{
    /// <summary>The Content-Type of the output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Writes every counter and gauge of <paramref name="metrics"/>, each family with HELP and TYPE.</summary>
    public static void Write(TextWriter writer, PipelineMetrics metrics)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(metrics);
        Family(writer, "monitoring_stream_points_offered_total", "counter", "Points producers offered.");
        Sample(writer, "monitoring_stream_points_offered_total", [], metrics.Offered);
        Family(writer, "monitoring_stream_points_accepted_total", "counter", "Points handed to a shard.");
        Sample(writer, "monitoring_stream_points_accepted_total", [], metrics.Accepted);
        Family(writer, "monitoring_stream_points_rejected_total", "counter", "Points refused, by reason.");
        foreach (KeyValuePair<RejectReason, long> r in metrics.RejectedByReason.OrderBy(r => r.Key))
        {
            Sample(writer, "monitoring_stream_points_rejected_total", [("reason", r.Key.ToMetricLabel())], r.Value);
        }

        Family(writer, "monitoring_stream_points_dropped_total", "counter", "Points dropped before a shard, by reason.");
        foreach (KeyValuePair<Ingest.DropReason, long> d in metrics.DroppedByReason.OrderBy(d => d.Key))
        {
            Sample(writer, "monitoring_stream_points_dropped_total", [("reason", Snake(d.Key.ToString()))], d.Value);
        }

        Family(writer, "monitoring_stream_points_late_total", "counter", "Points whose window had closed when they reached the shard, by metric.");
        foreach (KeyValuePair<string, long> l in metrics.LateByMetric.OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            Sample(writer, "monitoring_stream_points_late_total", [("metric", l.Key)], l.Value);
        }

        Family(writer, "monitoring_stream_points_emitted_total", "counter", "Points in windows handed to the sinks.");
        Sample(writer, "monitoring_stream_points_emitted_total", [], metrics.EmittedPoints);
        Gauge(writer, "monitoring_stream_points_open_windows", "Points aggregated into windows that are still open.", metrics.OpenWindowPoints);
        Gauge(writer, "monitoring_stream_points_queued", "Points accepted but not yet taken off a shard's channel.", metrics.Queued);
        Gauge(writer, "monitoring_stream_points_pending", "Points offered but still in a producer's unflushed batch.", metrics.Pending);
        Family(writer, "monitoring_stream_windows_emitted_total", "counter", "Window batches emitted, one per shard and window with data.");
        Sample(writer, "monitoring_stream_windows_emitted_total", [], metrics.WindowsEmitted);
        Gauge(writer, "monitoring_stream_series_active", "Series known to the registry.", metrics.SeriesActive);
        Family(writer, "monitoring_stream_overflow_resolutions_total", "counter", "Resolutions folded into an overflow series by the cardinality limit.");
        Sample(writer, "monitoring_stream_overflow_resolutions_total", [], metrics.OverflowResolutions);
        Family(writer, "monitoring_stream_shard_queue_depth", "gauge", "Point batches waiting in a shard's channel.");
        for (int shard = 0; shard < metrics.ShardQueueDepth.Count; shard++)
        {
            Sample(writer, "monitoring_stream_shard_queue_depth", [("shard", shard.ToString(CultureInfo.InvariantCulture))], metrics.ShardQueueDepth[shard]);
        }

        Gauge(writer, "monitoring_stream_shard_queue_capacity", "Capacity of each shard's channel, in batches.", metrics.ShardQueueCapacity);
        Gauge(writer, "monitoring_stream_open_state_bytes", "Bytes held by open windows' states, as of each shard's last tick.", metrics.OpenStateBytes);
        Gauge(writer, "monitoring_stream_held_state_bytes", "Bytes the shards hold for series state, as of each shard's last tick.", metrics.HeldStateBytes);
        Gauge(writer, "monitoring_stream_active_sources", "Sources holding some shard's watermark back now.", metrics.ActiveSources);
        Family(writer, "monitoring_stream_shard_watermark_seconds", "gauge", "Each shard's watermark, seconds since the epoch (absent before any).");
        for (int shard = 0; shard < metrics.Watermarks.Count; shard++)
        {
            if (metrics.Watermarks[shard] != long.MinValue)
            {
                Sample(writer, "monitoring_stream_shard_watermark_seconds", [("shard", shard.ToString(CultureInfo.InvariantCulture))], metrics.Watermarks[shard] / 1000.0);
            }
        }

        Counter(writer, "monitoring_stream_faults_total", "Faults the shards contained (a batch or a window that failed).", metrics.Faults);
        Counter(writer, "monitoring_stream_points_faulted_total", "Accepted points lost to a contained fault.", metrics.FaultedPoints);
        Counter(writer, "monitoring_stream_points_stale_total", "Accepted points refused because their series had been reclaimed.", metrics.StalePoints);
        Counter(writer, "monitoring_stream_series_reclaimed_total", "Series reclaimed (unlisted) after the idle timeout without a point.", metrics.SeriesReclaimed);
        Counter(writer, "monitoring_stream_series_retired_total", "Reclaimed series whose ids are retired: nothing written before the reclaim can still arrive.", metrics.SeriesRetired);
        Counter(writer, "monitoring_stream_writer_misuse_total", "Writes refused because a per-thread writer was used from another thread.", metrics.WriterMisuse);
        Family(writer, "monitoring_stream_state", "gauge", "1 for the pipeline's current state, 0 for the others.");
        foreach (PipelineState state in Enum.GetValues<PipelineState>())
        {
            Sample(writer, "monitoring_stream_state", [("state", Snake(state.ToString()))], state == metrics.State ? 1 : 0);
        }

        PerSource(writer, metrics, "offered", "Points a source offered.", s => s.Offered);
        PerSource(writer, metrics, "accepted", "Points of a source handed to a shard.", s => s.Accepted);
        PerSource(writer, metrics, "rejected", "Points of a source refused.", s => s.Rejected);
        PerSource(writer, metrics, "dropped", "Points of a source dropped, all reasons.", s => s.Dropped);
        PerSource(writer, metrics, "late", "Points of a source that reached a shard after their window had closed.", s => s.Late);

        Family(writer, "monitoring_stream_sink_queue_depth", "gauge", "Window batches waiting for a sink.");
        foreach (SinkMetrics s in metrics.Sinks)
        {
            Sample(writer, "monitoring_stream_sink_queue_depth", [("sink", s.Name)], s.QueueDepth);
        }

        Family(writer, "monitoring_stream_sink_queue_capacity", "gauge", "Bound of a sink's queue, in window batches.");
        foreach (SinkMetrics s in metrics.Sinks)
        {
            Sample(writer, "monitoring_stream_sink_queue_capacity", [("sink", s.Name)], s.QueueCapacity);
        }

        PerSink(writer, metrics, "batches_written", "Window batches a sink acknowledged.", s => s.BatchesWritten);
        PerSink(writer, metrics, "points_written", "Points in window batches a sink acknowledged.", s => s.PointsWritten);
        PerSink(writer, metrics, "batches_failed", "Window batches a sink gave up after every retry.", s => s.BatchesFailed);
        PerSink(writer, metrics, "points_failed", "Points in window batches a sink gave up.", s => s.PointsFailed);
        PerSink(writer, metrics, "errors", "Failed sink writes, retried or not.", s => s.Errors);
        PerSink(writer, metrics, "batches_abandoned", "Window batches a sink never got because a stop was forced.", s => s.BatchesAbandoned);
        PerSink(writer, metrics, "points_abandoned", "Points in window batches abandoned by a forced stop.", s => s.PointsAbandoned);
        PerSink(writer, metrics, "batches_dropped", "Window batches dropped from a sink's queue under the drop-oldest policy.", s => s.BatchesDropped);
        PerSink(writer, metrics, "points_dropped", "Points in window batches dropped from a sink's queue.", s => s.PointsDropped);
        PerSink(writer, metrics, "timeouts", "Sink write attempts that passed the attempt timeout.", s => s.Timeouts);
        Family(writer, "monitoring_stream_sink_state", "gauge", "1 for a sink's current state, 0 for the others.");
        foreach (SinkMetrics sink in metrics.Sinks)
        {
            foreach (SinkState state in Enum.GetValues<SinkState>())
            {
                Sample(writer, "monitoring_stream_sink_state", [("sink", sink.Name), ("state", Snake(state.ToString()))], state == sink.State ? 1 : 0);
            }
        }
    }

    /// <summary>Writes the delivery counters and state of remote-write sinks, labelled by sink name.</summary>
    public static void Write(TextWriter writer, IReadOnlyList<RemoteWriteSink> sinks)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(sinks);
        const string P = "monitoring_stream_remote_write_";
        Counter(writer, P + "samples_encoded_total", "Samples encoded from windows.", sinks, s => s.SamplesEncoded);
        Counter(writer, P + "samples_sent_total", "Samples in requests the receiver accepted.", sinks, s => s.SamplesSent);
        Counter(writer, P + "requests_sent_total", "Requests the receiver accepted.", sinks, s => s.RequestsSent);
        Counter(writer, P + "sent_bytes_total", "Compressed bytes of accepted requests.", sinks, s => s.BytesSent);
        Counter(writer, P + "samples_retried_total", "Samples of failed attempts that were retried, once per retry.", sinks, s => s.SamplesRetried);
        Counter(writer, P + "requests_retried_total", "Failed attempts that were retried.", sinks, s => s.RequestsRetried);
        Counter(writer, P + "requests_split_total", "Requests split in two after a 413 answer.", sinks, s => s.RequestsSplit);
        Family(writer, P + "samples_dropped_total", "counter", "Samples given up, by reason.");
        foreach (RemoteWriteSink sink in sinks)
        {
            foreach (RemoteWriteDropReason reason in Enum.GetValues<RemoteWriteDropReason>())
            {
                Sample(writer, P + "samples_dropped_total", [("sink", sink.Name), ("reason", Snake(reason.ToString()))], sink.SamplesDroppedFor(reason));
            }
        }

        Family(writer, P + "queue_depth", "gauge", "Requests waiting in the queue, not counting those in flight.");
        foreach (RemoteWriteSink sink in sinks)
        {
            Sample(writer, P + "queue_depth", [("sink", sink.Name)], sink.QueueDepth);
        }

        Family(writer, P + "queue_capacity", "gauge", "Bound of the queue, in requests.");
        foreach (RemoteWriteSink sink in sinks)
        {
            Sample(writer, P + "queue_capacity", [("sink", sink.Name)], sink.QueueCapacity);
        }

        Family(writer, P + "state", "gauge", "1 for the sink's current state (ok, retrying or dropping), 0 for the others.");
        foreach (RemoteWriteSink sink in sinks)
        {
            RemoteWriteSinkState state = sink.State;
            foreach (RemoteWriteSinkState s in Enum.GetValues<RemoteWriteSinkState>())
            {
                Sample(writer, P + "state", [("sink", sink.Name), ("state", Snake(s.ToString()))], s == state ? 1 : 0);
            }
        }
    }

    private static void Counter(TextWriter writer, string name, string help, double value)
    {
        Family(writer, name, "counter", help);
        Sample(writer, name, [], value);
    }

    private static void Counter(TextWriter writer, string name, string help, IReadOnlyList<RemoteWriteSink> sinks, Func<RemoteWriteSink, long> value)
    {
        Family(writer, name, "counter", help);
        foreach (RemoteWriteSink sink in sinks)
        {
            Sample(writer, name, [("sink", sink.Name)], value(sink));
        }
    }

    private static void PerSource(TextWriter writer, PipelineMetrics metrics, string what, string help, Func<SourceMetrics, long> value)
    {
        string name = $"monitoring_stream_source_points_{what}_total";
        Family(writer, name, "counter", help);
        foreach (SourceMetrics s in metrics.Sources)
        {
            Sample(writer, name, [("source", s.Source)], value(s));
        }
    }

    private static void PerSink(TextWriter writer, PipelineMetrics metrics, string what, string help, Func<SinkMetrics, long> value)
    {
        string name = $"monitoring_stream_sink_{what}_total";
        Family(writer, name, "counter", help);
        foreach (SinkMetrics s in metrics.Sinks)
        {
            Sample(writer, name, [("sink", s.Name)], value(s));
        }
    }

    private static void Gauge(TextWriter writer, string name, string help, double value)
    {
        Family(writer, name, "gauge", help);
        Sample(writer, name, [], value);
    }

    private static void Family(TextWriter writer, string name, string type, string help)
    {
        writer.Write("# HELP ");
        writer.Write(name);
        writer.Write(' ');
        writer.Write(help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal));
        writer.Write("\n# TYPE ");
        writer.Write(name);
        writer.Write(' ');
        writer.Write(type);
        writer.Write('\n');
    }

    private static void Sample(TextWriter writer, string name, ReadOnlySpan<(string Name, string Value)> labels, double value)
    {
        writer.Write(name);
        if (labels.Length > 0)
        {
            writer.Write('{');
            for (int i = 0; i < labels.Length; i++)
            {
                if (i > 0)
                {
                    writer.Write(',');
                }

                writer.Write(labels[i].Name);
                writer.Write("=\"");
                writer.Write(EscapeLabelValue(labels[i].Value));
                writer.Write('"');
            }

            writer.Write('}');
        }

        writer.Write(' ');
        writer.Write(FormatValue(value));
        writer.Write('\n');
    }

    /// <summary>A label value as the format needs it: backslash, double quote and line feed escaped.</summary>
    internal static string EscapeLabelValue(string value) =>
        value.AsSpan().IndexOfAny("\\\"\n") < 0
            ? value
            : value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    /// <summary>A value as Go's ParseFloat reads it: shortest round-trip form, or NaN, +Inf, -Inf.</summary>
    internal static string FormatValue(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        _ when double.IsNaN(value) => "NaN",
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };

    /// <summary>PascalCase enum names as snake_case label values: <c>QueueFull</c> becomes <c>queue_full</c>.</summary>
    private static string Snake(string pascal)
    {
        var builder = new StringBuilder(pascal.Length + 4);
        for (int i = 0; i < pascal.Length; i++)
        {
            char c = pascal[i];
            if (char.IsUpper(c))
            {
                if (i > 0)
                {
                    builder.Append('_');
                }

                builder.Append(char.ToLowerInvariant(c));
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }
}
