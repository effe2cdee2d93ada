namespace Monitoring.Stream.Pipeline;

/// <summary>Validated, immutable settings of a pipeline, taken from its options at construction; shards read them on their hot path.</summary>
internal sealed record MetricsPipelineSettings(
    TimeProvider TimeProvider,
    int ShardCount,
    int BatchSize,
    int ShardQueueBatches,
    long WindowMs,
    long LatenessMs,
    long SourceIdleTimeoutMs,
    long SeriesIdleTimeoutMs,
    long MaxFutureSkewMs,
    long MaxPointAgeMs,
    TimeSpan ProducerFlushInterval,
    TimeSpan TickInterval,
    TimeSpan ShutdownTimeout,
    bool Sketches,
    double RelativeAccuracy,
    int MaxBins,
    string Instance)
{
    /// <summary>
    /// The oldest timestamp whose window Arrow's <c>timestamp[ns]</c> columns can hold: the first window
    /// starting at or after 1677-09-21 (the nanosecond range's floor, in milliseconds).
    /// </summary>
    public long MinRepresentableMs { get; } = FirstWindowStartAtOrAfter(long.MinValue / 1_000_000, WindowMs);

    /// <summary>
    /// The newest timestamp whose window Arrow's <c>timestamp[ns]</c> columns can hold: the last millisecond
    /// of the last window ending at or before 2262-04-11 (the nanosecond range's ceiling, in milliseconds).
    /// </summary>
    public long MaxRepresentableMs { get; } = LastWindowEndAtOrBefore(long.MaxValue / 1_000_000, WindowMs) - 1;

    private static long FirstWindowStartAtOrAfter(long ms, long windowMs)
    {
        long start = ms - (((ms % windowMs) + windowMs) % windowMs);
        return start < ms ? start + windowMs : start;
    }

    private static long LastWindowEndAtOrBefore(long ms, long windowMs) =>
        ms - (((ms % windowMs) + windowMs) % windowMs);
}
