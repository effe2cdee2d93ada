using System.Buffers;
using System.Runtime.CompilerServices;
using Apache.Arrow;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// A pooled array that an Arrow buffer owns: disposing the last Arrow buffer that shares it (the
/// record batch, or a batch a sink kept with <c>SliceShared</c> / <c>WindowBatch.Retain</c>) returns
/// the array to its pool. So no reader can see the array reused while it still holds a batch.
/// </summary>
/// <remarks>
/// Debug builds never give the array back: they fill it with 0xFF and drop it, so a reader that kept
/// a batch without retaining it reads NaNs and invalid offsets (which Arrow's readers refuse) instead
/// of another window's numbers.
/// </remarks>
internal sealed class PooledColumnMemory : MemoryManager<byte>
{
    private readonly ArrayPool<byte> _pool;
    private readonly int _length;
    private byte[]? _array;

    private PooledColumnMemory(ArrayPool<byte> pool, byte[] array, int length)
    {
        _pool = pool;
        _array = array;
        _length = length;
    }

    /// <summary>An Arrow buffer over the first <paramref name="length"/> bytes of <paramref name="array"/> that returns it to <paramref name="pool"/> when disposed.</summary>
    public static ArrowBuffer ToArrowBuffer(ArrayPool<byte> pool, byte[] array, int length) =>
        CreateOwnedBuffer(new PooledColumnMemory(pool, array, length));

    // Arrow .NET builds owned buffers only through its allocators, which copy; its owner-taking
    // constructor is internal. The accessor reaches it without reflection; ArrowBatchOwnershipTests
    // fail at once if a later Apache.Arrow drops it.
    [UnsafeAccessor(UnsafeAccessorKind.Constructor)]
    private static extern ArrowBuffer CreateOwnedBuffer(IMemoryOwner<byte> owner);

    /// <summary>Bytes the pooled array holds (its power-of-two length, at least the buffer's), or 0 once returned.</summary>
    public int Capacity => Volatile.Read(ref _array)?.Length ?? 0;

    public override Span<byte> GetSpan() =>
        (_array ?? throw new ObjectDisposedException(nameof(PooledColumnMemory), "The window batch's memory was returned to its pool.")).AsSpan(0, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException("Window batch columns are not pinned.");

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        byte[]? array = Interlocked.Exchange(ref _array, null);
        if (array is null)
        {
            return;
        }

#if DEBUG
        array.AsSpan().Fill(0xFF);
        (_pool as ColumnArrayPool)?.Forget(array);
#else
        _pool.Return(array);
#endif
    }
}
