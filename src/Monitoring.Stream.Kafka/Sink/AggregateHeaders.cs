namespace Monitoring.Stream.Kafka.Sink;

/// <summary>Header names on aggregate messages (docs/kafka.md); values are UTF-8 text.</summary>
public static class AggregateHeaders
{
    /// <summary>The Arrow schema version of the value (docs/arrow-schema.md).</summary>
    public const string SchemaVersion = "monitoring_stream.schema_version";

    /// <summary>Inclusive window start, ms since the Unix epoch.</summary>
    public const string WindowStart = "monitoring_stream.window_start_ms";

    /// <summary>Exclusive window end, ms since the Unix epoch.</summary>
    public const string WindowEnd = "monitoring_stream.window_end_ms";

    /// <summary>The shard of the instance that aggregated the window.</summary>
    public const string Shard = "monitoring_stream.shard";

    /// <summary>The engine instance.</summary>
    public const string Instance = "monitoring_stream.instance";

    /// <summary>The emission sequence of the shard: a window emitted again (after a rebalance closed it early) has a higher one.</summary>
    public const string Sequence = "monitoring_stream.sequence";

    /// <summary>
    /// Per partition of the points topic the writing instance had assigned, the offsets the batch's points can have
    /// come from (<see cref="SourceOffsetRange"/>, <c>topic/partition:low-high</c>, comma-separated); absent when the
    /// sink has no source attached.
    /// </summary>
    public const string SourceOffsets = "monitoring_stream.source_offsets";

    /// <summary>Points aggregated into the batch.</summary>
    public const string Points = "monitoring_stream.points";
}
