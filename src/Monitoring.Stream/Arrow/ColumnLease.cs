using System.Buffers;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// The pooled arrays behind one record batch's columns. Disposed once nothing reads the batch any
/// more (every sink acknowledged or gave it up), which returns the arrays for the next window: a
/// window of 100,000 series is tens of megabytes, and fresh arrays each time cost full collections.
/// </summary>
internal sealed class ColumnLease : IDisposable
{
    private readonly ArrayPool<byte> _pool;
    private readonly List<byte[]> _arrays = new(24);

    public ColumnLease(ArrayPool<byte> pool) => _pool = pool;

    public void Add(byte[] array) => _arrays.Add(array);

    public void Dispose()
    {
        foreach (byte[] array in _arrays)
        {
            _pool.Return(array);
        }

        _arrays.Clear();
    }
}
