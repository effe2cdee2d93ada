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
    string Instance);
