namespace Monitoring.Stream.Ingest;

/// <summary>What a message on a shard's channel asks the shard to do.</summary>
internal enum BatchKind
{
    /// <summary>Aggregate the points.</summary>
    Points,

    /// <summary>The clock ticked: advance an idle shard's watermark and close what is due.</summary>
    Tick,

    /// <summary>Signal <see cref="PointBatch.Barrier"/> once everything before it is processed.</summary>
    Barrier,
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

    /// <summary>Source that wrote the batch, for counters kept per source.</summary>
    public int Source;

    public TaskCompletionSource? Barrier;

    public bool IsFull => Count == Points.Length;

    public void Reset()
    {
        Count = 0;
        Kind = BatchKind.Points;
        Barrier = null;
    }
}
