using System.Buffers;
using System.Runtime.CompilerServices;
using Apache.Arrow;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// A growable byte buffer that becomes an Arrow buffer without a copy: the column writers fill it
/// directly, instead of going through Arrow's per-value builders. Its array is rented from the
/// writer's pool and owned by the Arrow buffer it becomes (<see cref="PooledColumnMemory"/>).
/// </summary>
internal struct ColumnBytes
{
    private readonly ArrayPool<byte> _pool;
    private byte[] _bytes;
    private int _length;

    public ColumnBytes(int capacity, ArrayPool<byte> pool)
    {
        _pool = pool;
        _bytes = pool.Rent(Math.Max(capacity, 64));
        _length = 0;
    }

    public readonly int Length => _length;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> GetSpan(int size)
    {
        if (_bytes.Length - _length < size)
        {
            Grow(size);
        }

        return _bytes.AsSpan(_length);
    }

    public void Advance(int count) => _length += count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write<T>(T value)
        where T : unmanaged
    {
        int size = Unsafe.SizeOf<T>();
        if (_bytes.Length - _length < size)
        {
            Grow(size);
        }

        Unsafe.WriteUnaligned(ref _bytes[_length], value);
        _length += size;
    }

    /// <summary>Appends <paramref name="count"/> copies of <paramref name="value"/>.</summary>
    public void Fill(long value, int count)
    {
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(GetSpan(count * sizeof(long))[..(count * sizeof(long))]).Fill(value);
        _length += count * sizeof(long);
    }

    /// <summary>Takes the next <paramref name="count"/> values of a fixed-width column at once, for the caller to fill by row.</summary>
    public Span<T> Take<T>(int count)
        where T : unmanaged
    {
        int size = count * Unsafe.SizeOf<T>();
        Span<T> values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(GetSpan(size)[..size]);
        _length += size;
        return values;
    }

    public void Write(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        _length += bytes.Length;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Grow(int size)
    {
        byte[] grown = _pool.Rent(Math.Max(_bytes.Length * 2, _length + size));
        _bytes.AsSpan(0, _length).CopyTo(grown);
        _pool.Return(_bytes);
        _bytes = grown;
    }

    /// <summary>The written bytes as an Arrow buffer that owns the pooled array and returns it when the last batch sharing it is disposed.</summary>
    public readonly ArrowBuffer ToArrowBuffer() => PooledColumnMemory.ToArrowBuffer(_pool, _bytes, _length);

    /// <summary>A validity bitmap with every bit clear (all values null).</summary>
    public static ArrowBuffer AllNull(int rows) => new(new byte[(rows + 7) / 8]);
}
