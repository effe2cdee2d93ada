using System.Buffers;
using System.Numerics;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// The column arrays of one shard's window batches: power-of-two size classes, a cap on the bytes it
/// keeps for reuse, and counts of what it keeps and what is out (in batches not yet released).
/// </summary>
/// <remarks>
/// <para>Why not <see cref="ArrayPool{T}.Create(int, int)"/>: it keeps up to a fixed number of arrays in
/// every size class, so what it holds follows the largest windows ever seen (a burst of series leaves
/// hundreds of megabytes pooled for ever) and nobody can say how much that is. This pool keeps at most
/// <see cref="MaxPooledBytes"/>: the columns of the largest of the last <see cref="RecentWindows"/>
/// windows (what the next window needs: the arrays of each released batch are reused by the next one
/// built), and at least <see cref="MinPooledBytes"/>. An array returned beyond that is left to the
/// collector, and a size class that none of those windows asked for is released at <see cref="Trim"/>.</para>
/// <para>Arrays are rented on the shard's thread and returned by whichever thread disposes the last batch
/// sharing them (a sink's), about twenty of each per window, so one lock is cheap here.</para>
/// </remarks>
internal sealed class ColumnArrayPool : ArrayPool<byte>
{
    private const int MinShift = 6;
    private const int MaxShift = 30;

    /// <summary>Windows the pool remembers: their largest sets the cap, and a size class none of them asked for is released.</summary>
    public const int RecentWindows = 8;

    /// <summary>The cap's floor, so small windows keep their few arrays.</summary>
    public const long MinPooledBytes = 1 << 20;

    private readonly Stack<byte[]>[] _classes = new Stack<byte[]>[MaxShift + 1];
    private readonly long[] _lastRentedWindow = new long[MaxShift + 1];
    private readonly long[] _windowBytes = new long[RecentWindows];
    private readonly Lock _gate = new();
    private long _window;
    private long _maxPooledBytes = MinPooledBytes;
    private long _pooledBytes;
    private long _rentedBytes;

    public ColumnArrayPool()
    {
        for (int i = 0; i < _classes.Length; i++)
        {
            _classes[i] = new Stack<byte[]>();
        }
    }

    /// <summary>The most bytes the pool keeps for reuse now.</summary>
    public long MaxPooledBytes => Volatile.Read(ref _maxPooledBytes);

    /// <summary>Bytes kept for reuse now.</summary>
    public long PooledBytes => Volatile.Read(ref _pooledBytes);

    /// <summary>Bytes rented and not returned: the columns of window batches some sink (or a retained copy) still holds.</summary>
    public long RentedBytes => Volatile.Read(ref _rentedBytes);

    /// <inheritdoc/>
    public override byte[] Rent(int minimumLength)
    {
        int shift = ShiftOf(minimumLength);
        lock (_gate)
        {
            _lastRentedWindow[shift] = _window;
            _windowBytes[_window % RecentWindows] += 1L << shift;
            if (_classes[shift].TryPop(out byte[]? pooled))
            {
                _pooledBytes -= pooled.Length;
                _rentedBytes += pooled.Length;
                return pooled;
            }

            _rentedBytes += 1L << shift;
        }

        return GC.AllocateUninitializedArray<byte>(1 << shift);
    }

    /// <inheritdoc/>
    public override void Return(byte[] array, bool clearArray = false)
    {
        ArgumentNullException.ThrowIfNull(array);
        if (!BitOperations.IsPow2(array.Length) || array.Length < 1 << MinShift || array.Length > 1 << MaxShift)
        {
            throw new ArgumentException("The array was not rented from this pool.", nameof(array));
        }

        if (clearArray)
        {
            Array.Clear(array);
        }

        int shift = BitOperations.Log2((uint)array.Length);
        lock (_gate)
        {
            _rentedBytes -= array.Length;
            if (_pooledBytes + array.Length <= _maxPooledBytes)
            {
                _classes[shift].Push(array);
                _pooledBytes += array.Length;
            }
        }
    }

    /// <summary>A returned array that is not kept (debug builds poison and drop every array): it is no longer out.</summary>
    public void Forget(byte[] array)
    {
        lock (_gate)
        {
            _rentedBytes -= array.Length;
        }
    }

    /// <summary>
    /// Called once per window, before building it: sets the cap from the last windows' columns and
    /// releases what is over it, largest size classes first, and every size class none of them asked
    /// for, so the arrays of a past burst do not stay pooled.
    /// </summary>
    public void Trim()
    {
        lock (_gate)
        {
            long largest = 0;
            foreach (long bytes in _windowBytes)
            {
                largest = Math.Max(largest, bytes);
            }

            _maxPooledBytes = Math.Max(MinPooledBytes, largest);
            _window++;
            _windowBytes[_window % RecentWindows] = 0;
            for (int shift = MaxShift; shift >= MinShift; shift--)
            {
                Stack<byte[]> arrays = _classes[shift];
                bool idle = _window - _lastRentedWindow[shift] > RecentWindows;
                while (arrays.Count > 0 && (idle || _pooledBytes > _maxPooledBytes))
                {
                    arrays.Pop();
                    _pooledBytes -= 1L << shift;
                }
            }
        }
    }

    private static int ShiftOf(int minimumLength)
    {
        if ((uint)minimumLength > 1u << MaxShift)
        {
            throw new ArgumentOutOfRangeException(nameof(minimumLength), minimumLength, "A column larger than 1 GiB.");
        }

        return Math.Max(MinShift, BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)Math.Max(minimumLength, 1))));
    }
}
