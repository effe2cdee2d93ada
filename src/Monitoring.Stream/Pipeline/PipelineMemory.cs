namespace Monitoring.Stream.Pipeline;

/// <summary>
/// What the engine holds, by part, in bytes: each part has a bound set by the settings (docs/memory.md).
/// Shard figures are as of each shard's last tick; the rest are read when the snapshot is taken.
/// </summary>
public sealed class PipelineMemory
{
    /// <summary>Open windows: their per-series arrays and the sketches of the series they hold.</summary>
    public long OpenWindowBytes { get; init; }

    /// <summary>Window buffers kept for the next windows (their arrays, cleared).</summary>
    public long SpareWindowBytes { get; init; }

    /// <summary>Cleared sketches kept for the next windows' series.</summary>
    public long SketchPoolBytes { get; init; }

    /// <summary>Sketches in <see cref="SketchPoolBytes"/>.</summary>
    public long PooledSketches { get; init; }

    /// <summary>The shards' per-series arrays outside windows (generation and last activity per slot), and each shard's array of a batch's sketch bin indices.</summary>
    public long SeriesSlotBytes { get; init; }

    /// <summary>Point batches allocated between producers and shards (in queues, in writers, or pooled).</summary>
    public long PointBatchBytes { get; init; }

    /// <summary>Columns of emitted window batches not yet released: queued for a sink, being written, or retained by one.</summary>
    public long WindowBatchBytes { get; init; }

    /// <summary>Column arrays kept for the next windows' batches.</summary>
    public long ColumnPoolBytes { get; init; }

    /// <summary>The series registry: an estimate from the series it holds and the indexes issued (the label strings themselves are the callers').</summary>
    public long RegistryBytes { get; init; }

    /// <summary>The sum of every part.</summary>
    public long TotalBytes => OpenWindowBytes + SpareWindowBytes + SketchPoolBytes + SeriesSlotBytes + PointBatchBytes + WindowBatchBytes + ColumnPoolBytes + RegistryBytes;
}
