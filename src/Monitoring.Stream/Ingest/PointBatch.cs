namespace Monitoring.Stream.Ingest;

/// <summary>What a message on a shard's channel asks the shard to do.</summary>
internal enum BatchKind
{
    /// <summary>Aggregate the points (none, for a progress mark) and note the source's progress.</summary>
    Points,

    /// <summary>The clock ticked: retire idle sources, advance the watermark and close what is due.</summary>
    Tick,

    /// <summary>Signal <see cref="PointBatch.Barrier"/> once everything before it is processed.</summary>
    Barrier,

    /// <summary>Emit now the open windows that hold points of <see cref="PointBatch.Origin"/>, then signal <see cref="PointBatch.Barrier"/>.</summary>
    CloseSource,
}

/// <summary>
/// A pooled buffer of points bound for one shard. A producer fills it and writes it to the shard's
/// channel in one operation; the shard returns it to the pool after aggregating it.
/// </summary>
internal sealed class PointBatch
{
    public PointBatch(int capacity) => Points = new IngestPoint[capacity];

    public IngestPoint[] Points { get; }

    public int Count;

    public BatchKind Kind;

    /// <summary>The source that wrote the batch (null for control messages of the pipeline).</summary>
    public SourceCounters? Origin;

    /// <summary>The source's sequence number of this batch for this shard, from 1; 0 for a batch with no points.</summary>
    public long Seq;

    /// <summary>The source's event-time progress when it handed the batch over: its newest timestamp, capped at its clock (ms).</summary>
    public long Progress = long.MinValue;

    /// <summary>The engine's clock (ms) when the batch was handed over (or, for a tick, when the tick fired).</summary>
    public long SentAt;

    public TaskCompletionSource? Barrier;

    /// <summary>For <see cref="BatchKind.CloseSource"/>: the sequence of the last window batch the shard had emitted once the close was done, set before <see cref="Barrier"/> completes.</summary>
    public long EmittedThrough;

    public bool IsFull => Count == Points.Length;

    public void Reset()
    {
        Count = 0;
        Kind = BatchKind.Points;
        Origin = null;
        Seq = 0;
        Progress = long.MinValue;
        SentAt = 0;
        Barrier = null;
        EmittedThrough = 0;
    }
}
