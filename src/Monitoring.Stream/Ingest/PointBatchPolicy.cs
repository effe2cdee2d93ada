using Microsoft.Extensions.ObjectPool;

namespace Monitoring.Stream.Ingest;

/// <summary>Pool policy for point batches: fixed capacity, reset on return, control messages not kept.</summary>
internal sealed class PointBatchPolicy(int capacity) : IPooledObjectPolicy<PointBatch>
{
    private long _created;

    /// <summary>Batches allocated so far: grows until the pool covers the most batches ever in flight.</summary>
    public long Created => Interlocked.Read(ref _created);

    public PointBatch Create()
    {
        Interlocked.Increment(ref _created);
        return new(capacity);
    }

    public bool Return(PointBatch obj)
    {
        bool keep = obj.Kind == BatchKind.Points && obj.Points.Length == capacity;
        obj.Reset();
        return keep;
    }
}
