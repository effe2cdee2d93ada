using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Pipeline;

/// <summary>A snapshot of the engine's self-metrics: what came in, what became of it, how the sinks fare.</summary>
public sealed class PipelineMetrics
{
    /// <summary>Points producers offered.</summary>
    public long Offered { get; init; }

    /// <summary>Points handed to a shard.</summary>
    public long Accepted { get; init; }

    /// <summary>Points refused, by reason.</summary>
    public required IReadOnlyDictionary<RejectReason, long> RejectedByReason { get; init; }

    /// <summary>Points dropped before a shard, by reason.</summary>
    public required IReadOnlyDictionary<DropReason, long> DroppedByReason { get; init; }

    /// <summary>Per source: offered, accepted, rejected and dropped.</summary>
    public required IReadOnlyList<SourceMetrics> Sources { get; init; }

    /// <summary>Where the pipeline is in its life.</summary>
    public PipelineState State { get; init; }

    /// <summary>Faults the shards contained (a batch or a window that failed), each counted in <see cref="FaultedPoints"/>.</summary>
    public long Faults { get; init; }

    /// <summary>Accepted points lost to a contained fault (also in <see cref="DroppedByReason"/> under <see cref="DropReason.ShardFault"/> with the writers' own).</summary>
    public long FaultedPoints { get; init; }

    /// <summary>The last fault, as "Type: message", or null.</summary>
    public string? LastFault { get; init; }

    /// <summary>Writes refused because a per-thread writer was used from a thread that does not own it.</summary>
    public long WriterMisuse { get; init; }

    /// <summary>Points offered but still in a producer's unflushed batch.</summary>
    public long Pending => Offered - Accepted - Rejected - Dropped;

    /// <summary>All refused points.</summary>
    public long Rejected => RejectedByReason.Values.Sum();

    /// <summary>All dropped points.</summary>
    public long Dropped => DroppedByReason.Values.Sum();

    /// <summary>Points whose window had closed when they reached the shard.</summary>
    public long Late { get; init; }

    /// <summary>Late points by metric name.</summary>
    public required IReadOnlyDictionary<string, long> LateByMetric { get; init; }

    /// <summary>Points in windows handed to the sinks.</summary>
    public long EmittedPoints { get; init; }

    /// <summary>Points aggregated into windows that are still open.</summary>
    public long OpenWindowPoints { get; init; }

    /// <summary>Points accepted but not yet taken off a shard's channel (a batch a waiting writer is still handing over included).</summary>
    public long Queued => Accepted - EmittedPoints - OpenWindowPoints - Late - FaultedPoints - StalePoints;

    /// <summary>Accepted points refused by their shard because their series' id had been retired (written through an id held from before its reclaim).</summary>
    public long StalePoints { get; init; }

    /// <summary>Series reclaimed (unlisted: a new lookup of their labels interns a fresh series) after <see cref="MetricsPipelineOptions.SeriesIdleTimeout"/> without a point.</summary>
    public long SeriesReclaimed { get; init; }

    /// <summary>Reclaimed series whose ids are retired too, once nothing written before the reclaim could still arrive; points through them are stale from then on.</summary>
    public long SeriesRetired { get; init; }

    /// <summary>Bytes the shards hold for series state: open and spare windows with their sketches, and per-series arrays (as of each shard's last tick).</summary>
    public long HeldStateBytes { get; init; }

    /// <summary>Sources holding some shard's watermark back now (the most over shards).</summary>
    public int ActiveSources { get; init; }

    /// <summary>Each shard's watermark, ms since the epoch (<see cref="long.MinValue"/> before any).</summary>
    public required IReadOnlyList<long> Watermarks { get; init; }

    /// <summary>Window batches emitted (one per shard and window with data).</summary>
    public long WindowsEmitted { get; init; }

    /// <summary>Series known to the registry now (reclaimed ones excluded).</summary>
    public int SeriesActive { get; init; }

    /// <summary>Resolutions folded into an overflow series by the cardinality limit.</summary>
    public long OverflowResolutions { get; init; }

    /// <summary>Batches waiting in each shard's channel, by shard.</summary>
    public required IReadOnlyList<int> ShardQueueDepth { get; init; }

    /// <summary>Capacity of each shard's channel, in batches.</summary>
    public int ShardQueueCapacity { get; init; }

    /// <summary>Bytes held by open windows' states, as of each shard's last tick.</summary>
    public long OpenStateBytes { get; init; }

    /// <summary>Point batches allocated by the pool so far; it stops growing once the pool covers the peak in flight.</summary>
    public long BatchesAllocated { get; init; }

    /// <summary>What the engine holds, by part (each bounded by the settings; see docs/memory.md).</summary>
    public required PipelineMemory Memory { get; init; }

    /// <summary>Per sink: queue, written, failed, errors.</summary>
    public required IReadOnlyList<SinkMetrics> Sinks { get; init; }
}

/// <summary>Counters of one source of points.</summary>
/// <param name="Source">The source name.</param>
/// <param name="Offered">Points offered.</param>
/// <param name="Accepted">Points handed to a shard.</param>
/// <param name="Rejected">Points refused.</param>
/// <param name="Dropped">Points dropped, all reasons.</param>
/// <param name="DroppedQueueFull">Points dropped because a shard was full.</param>
/// <param name="Late">Points that reached a shard after their window had closed.</param>
/// <param name="Writers">Writers (live and disposed) counted under the name.</param>
public sealed record SourceMetrics(string Source, long Offered, long Accepted, long Rejected, long Dropped, long DroppedQueueFull, long Late = 0, int Writers = 1);

/// <summary>Counters of one sink.</summary>
/// <param name="Name">The sink's name.</param>
/// <param name="QueueDepth">Batches waiting.</param>
/// <param name="QueueCapacity">Queue bound.</param>
/// <param name="BatchesWritten">Batches acknowledged.</param>
/// <param name="PointsWritten">Points in acknowledged batches.</param>
/// <param name="BatchesFailed">Batches given up after every retry.</param>
/// <param name="PointsFailed">Points in batches given up.</param>
/// <param name="Errors">Failed attempts, retried or not.</param>
/// <param name="LastError">The last error, if any.</param>
/// <param name="BatchesAbandoned">Batches this sink never got because a stop was forced (second signal or shutdown timeout).</param>
/// <param name="PointsAbandoned">Points in abandoned batches.</param>
/// <param name="State">How the sink fares now.</param>
/// <param name="BatchesDropped">Batches dropped from the queue under the drop-oldest policy.</param>
/// <param name="PointsDropped">Points in dropped batches.</param>
/// <param name="Timeouts">Attempts that passed the attempt timeout.</param>
/// <param name="QueuePolicy">What the sink's queue does when full.</param>
/// <param name="QueueBytes">Bytes of the batches waiting (their columns).</param>
/// <param name="QueueCapacityBytes">Queue bound in bytes.</param>
/// <param name="BusyFor">How long the sink has been on the window it holds now (writing it, or waiting to retry it); zero when it holds none.</param>
public sealed record SinkMetrics(
    string Name,
    int QueueDepth,
    int QueueCapacity,
    long BatchesWritten,
    long PointsWritten,
    long BatchesFailed,
    long PointsFailed,
    long Errors,
    string? LastError,
    long BatchesAbandoned = 0,
    long PointsAbandoned = 0,
    SinkState State = SinkState.Ok,
    long BatchesDropped = 0,
    long PointsDropped = 0,
    long Timeouts = 0,
    SinkQueuePolicy QueuePolicy = SinkQueuePolicy.Block,
    long QueueBytes = 0,
    long QueueCapacityBytes = 0,
    TimeSpan BusyFor = default);
