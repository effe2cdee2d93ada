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
    /// Points older than this, by the engine's clock, are refused as too old (default 1 h). A Kafka source
    /// that replays older history raises it; it also bounds every timestamp the window arithmetic sees.
    /// </summary>
    public TimeSpan MaxPointAge { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// A source (a writer) that hands nothing to a shard for this long, by the engine's clock, stops
    /// holding that shard's watermark back (default 10 s). When no source is active the clock closes windows.
    /// </summary>
    public TimeSpan SourceIdleTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Longest a graceful stop may take (default 30 s). Past it the stop abandons what is left, as a
    /// second stop signal would, counts it per sink, and <see cref="MetricsPipeline.StopAsync"/> throws
    /// <see cref="TimeoutException"/>. At most 1 day (a timer's range); <see cref="Timeout.InfiniteTimeSpan"/> waits for ever.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A series with no point for this long (in event time, behind the watermark) is reclaimed (default
    /// 15 min), in two phases: it is unlisted at once (a later lookup of its labels makes a new series), and
    /// its id is retired once every point written before the unlisting has reached its shard (its state
    /// freed, its index reused after another such period). A point written through the id before the
    /// retirement is aggregated; after it, refused and counted (<see cref="PipelineMetrics.StalePoints"/>).
    /// <see cref="Timeout.InfiniteTimeSpan"/> keeps every series for the pipeline's life.
    /// </summary>
    public TimeSpan SeriesIdleTimeout { get; set; } = TimeSpan.FromMinutes(15);

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

    /// <summary>Longest finite <see cref="ShutdownTimeout"/> (1 day): well inside the range of the timers that enforce it.</summary>
    private static readonly TimeSpan s_maxTimeout = TimeSpan.FromDays(1);

    /// <summary>Checks every setting and throws <see cref="ArgumentException"/> naming the first one out of range.</summary>
    public void Validate() => ToSettings();

    /// <summary>Validates and takes an immutable snapshot: later changes to these options do not reach a running pipeline.</summary>
    internal MetricsPipelineSettings ToSettings()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ShardCount, 1, nameof(ShardCount));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ShardCount, 1024, nameof(ShardCount));
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchSize, 1, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(BatchSize, 1 << 20, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(ShardQueueBatches, 1, nameof(ShardQueueBatches));
        if (WindowSize < TimeSpan.FromMilliseconds(1) || WindowSize > TimeSpan.FromDays(366) || WindowSize.Ticks % TimeSpan.TicksPerMillisecond != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(WindowSize), WindowSize, "The window size must be a whole number of milliseconds, from 1 ms to 366 days.");
        }

        RequireRange(AllowedLateness, TimeSpan.Zero, TimeSpan.FromDays(366), nameof(AllowedLateness));
        RequireRange(TickInterval, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1), nameof(TickInterval));
        RequireRange(ProducerFlushInterval, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1), nameof(ProducerFlushInterval));
        RequireRange(MaxFutureSkew, TimeSpan.Zero, TimeSpan.FromDays(3650), nameof(MaxFutureSkew));
        RequireRange(MaxPointAge, TimeSpan.FromMilliseconds(1), TimeSpan.FromDays(3650), nameof(MaxPointAge));
        RequireRange(SourceIdleTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromDays(1), nameof(SourceIdleTimeout));
        if (SeriesIdleTimeout != Timeout.InfiniteTimeSpan)
        {
            RequireRange(SeriesIdleTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromDays(366), nameof(SeriesIdleTimeout));
        }

        // A finite timeout above a timer's range (about 49.7 days) would pass here and throw from the stop itself,
        // losing the open windows: refuse it when the options are checked instead.
        if ((ShutdownTimeout <= TimeSpan.Zero || ShutdownTimeout > s_maxTimeout) && ShutdownTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(ShutdownTimeout), ShutdownTimeout, "The shutdown timeout must be positive and at most 1 day, or infinite.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
        ArgumentNullException.ThrowIfNull(Registry, nameof(Registry));
        ArgumentException.ThrowIfNullOrWhiteSpace(Instance, nameof(Instance));
        _ = new DdSketch(SketchRelativeAccuracy, SketchMaxBins);
        return new MetricsPipelineSettings(
            TimeProvider,
            ShardCount,
            BatchSize,
            ShardQueueBatches,
            (long)WindowSize.TotalMilliseconds,
            (long)AllowedLateness.TotalMilliseconds,
            (long)SourceIdleTimeout.TotalMilliseconds,
            SeriesIdleTimeout == Timeout.InfiniteTimeSpan ? long.MaxValue : (long)SeriesIdleTimeout.TotalMilliseconds,
            (long)MaxFutureSkew.TotalMilliseconds,
            (long)MaxPointAge.TotalMilliseconds,
            ProducerFlushInterval,
            TickInterval,
            ShutdownTimeout,
            Sketches,
            SketchRelativeAccuracy,
            SketchMaxBins,
            Instance);
    }

    private static void RequireRange(TimeSpan value, TimeSpan min, TimeSpan max, string name)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be from {min} to {max}.");
        }
    }
}
