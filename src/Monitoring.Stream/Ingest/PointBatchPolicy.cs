using Microsoft.Extensions.ObjectPool;

namespace Monitoring.Stream.Ingest;

/// <summary>Pool policy for point batches: fixed capacity, reset on return, control messages not kept.</summary>
internal sealed class PointBatchPolicy(int capacity) : IPooledObjectPolicy<PointBatch>
{
    public PointBatch Create() => new(capacity);

    public bool Return(PointBatch obj)
    {
        bool keep = obj.Kind == BatchKind.Points && obj.Points.Length == capacity;
        obj.Reset();
        return keep;
    }
}
