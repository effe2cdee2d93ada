using Monitoring.Stream.Series;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Pipeline;

/// <summary>Settings of a <see cref="MetricsPipeline"/>; every one has a production default.</summary>
public sealed class MetricsPipelineOptions
{
    /// <summary>Aggregating shards (default: one per core).</summary>
    public int ShardCount { get; set; } = Environment.ProcessorCount;

    /// <summary>Tumbling window size, aligned to the Unix epoch (default 10 s).</summary>
    public TimeSpan WindowSize { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How far behind the newest event time a window stays open (default 5 s).</summary>
    public TimeSpan AllowedLateness { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Points per pooled batch between a producer and a shard (default 1,024).</summary>
    public int BatchSize { get; set; } = 1024;

    /// <summary>Batches a shard's channel holds before producers wait or drop (default 256).</summary>
    public int ShardQueueBatches { get; set; } = 256;

    /// <summary>Longest a producer that keeps writing holds a partial batch (default 200 ms).</summary>
    public TimeSpan ProducerFlushInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Interval of the clock tick that closes windows of idle shards (default 1 s).</summary>
    public TimeSpan TickInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Points further in the future than this, by the engine's clock, are refused (default 10 min).</summary>
    public TimeSpan MaxFutureSkew { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Longest a graceful stop may take (default 30 s). Past it the stop abandons what is left, as a
    /// second stop signal would, counts it per sink, and <see cref="MetricsPipeline.StopAsync"/> throws
    /// <see cref="TimeoutException"/>. <see cref="Timeout.InfiniteTimeSpan"/> waits for ever.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Whether every series keeps a quantile sketch (default true).</summary>
    public bool Sketches { get; set; } = true;

    /// <summary>Relative accuracy of the sketches (default 0.01).</summary>
    public double SketchRelativeAccuracy { get; set; } = DdSketch.DefaultRelativeAccuracy;

    /// <summary>Bin limit per sign of the sketches (default 2,048).</summary>
    public int SketchMaxBins { get; set; } = DdSketch.DefaultMaxBinsPerSign;

    /// <summary>Name of this engine instance, written into every batch (default: machine name and process id).</summary>
    public string Instance { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>The clock; tests pass a fake one.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Limits of the series registry.</summary>
    public SeriesRegistryOptions Registry { get; set; } = new();

    internal MetricsPipelineSettings Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ShardCount, 1, nameof(ShardCount));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ShardCount, 1024, nameof(ShardCount));
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchSize, 1, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(ShardQueueBatches, 1, nameof(ShardQueueBatches));
        if (WindowSize < TimeSpan.FromMilliseconds(1) || WindowSize.Ticks % TimeSpan.TicksPerMillisecond != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(WindowSize), WindowSize, "The window size must be a whole number of milliseconds, at least 1.");
        }

        if (AllowedLateness < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(AllowedLateness), AllowedLateness, "Allowed lateness cannot be negative.");
        }

        if (TickInterval <= TimeSpan.Zero || ProducerFlushInterval <= TimeSpan.Zero || MaxFutureSkew < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(TickInterval), "Intervals must be positive and the skew non-negative.");
        }

        if (ShutdownTimeout <= TimeSpan.Zero && ShutdownTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(ShutdownTimeout), ShutdownTimeout, "The shutdown timeout must be positive, or infinite.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentException.ThrowIfNullOrWhiteSpace(Instance);
        _ = new DdSketch(SketchRelativeAccuracy, SketchMaxBins);
        return new MetricsPipelineSettings(
            TimeProvider,
            (long)WindowSize.TotalMilliseconds,
            (long)AllowedLateness.TotalMilliseconds,
            Sketches,
            SketchRelativeAccuracy,
            SketchMaxBins);
    }
}
