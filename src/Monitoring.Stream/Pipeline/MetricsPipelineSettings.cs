namespace Monitoring.Stream.Pipeline;

/// <summary>Validated, resolved settings that shards read on their hot path.</summary>
internal sealed record MetricsPipelineSettings(
    TimeProvider TimeProvider,
    long WindowMs,
    long LatenessMs,
    bool Sketches,
    double RelativeAccuracy,
    int MaxBins);
