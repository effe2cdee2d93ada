using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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

    /// <summary>
    /// Appends <paramref name="length"/> bytes from <paramref name="source"/> into room the caller
    /// reserved with <see cref="GetSpan"/>: no capacity check, and strings up to 64 bytes (names and
    /// label values) are copied inline with two overlapping loads and stores instead of a memmove call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteReserved(ref byte source, int length)
    {
        System.Diagnostics.Debug.Assert(_bytes.Length - _length >= length, "The caller reserved the room.");
        ref byte target = ref Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(_bytes), _length);
        if (length <= 16)
        {
            if (length >= 8)
            {
                ulong head = Unsafe.ReadUnaligned<ulong>(ref source);
                ulong tail = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref source, length - 8));
                Unsafe.WriteUnaligned(ref target, head);
                Unsafe.WriteUnaligned(ref Unsafe.Add(ref target, length - 8), tail);
            }
            else if (length >= 4)
            {
                uint head = Unsafe.ReadUnaligned<uint>(ref source);
                uint tail = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref source, length - 4));
                Unsafe.WriteUnaligned(ref target, head);
                Unsafe.WriteUnaligned(ref Unsafe.Add(ref target, length - 4), tail);
            }
            else
            {
                for (int i = 0; i < length; i++)
                {
                    Unsafe.Add(ref target, i) = Unsafe.Add(ref source, i);
                }
            }
        }
        else if (length <= 32)
        {
            Vector128<byte> head = Vector128.LoadUnsafe(ref source);
            Vector128<byte> tail = Vector128.LoadUnsafe(ref source, (nuint)(length - 16));
            head.StoreUnsafe(ref target);
            tail.StoreUnsafe(ref target, (nuint)(length - 16));
        }
        else if (length <= 64)
        {
            Vector256<byte> head = Vector256.LoadUnsafe(ref source);
            Vector256<byte> tail = Vector256.LoadUnsafe(ref source, (nuint)(length - 32));
            head.StoreUnsafe(ref target);
            tail.StoreUnsafe(ref target, (nuint)(length - 32));
        }
        else
        {
            Unsafe.CopyBlockUnaligned(ref target, ref source, (uint)length);
        }

        _length += length;
    }

    /// <summary>
    /// Appends <paramref name="length"/> (at most 64) bytes from <paramref name="source"/> by copying 64
    /// bytes at once: the caller guarantees 64 readable bytes at <paramref name="source"/> and reserved 64
    /// bytes of room past <see cref="Length"/>. The bytes copied past the string are overwritten by the
    /// next string or lie past the column's end, which no reader sees.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteReserved64(ref byte source, int length)
    {
        System.Diagnostics.Debug.Assert(length <= 64 && _bytes.Length - _length >= 64, "The caller reserved the room.");
        ref byte target = ref Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(_bytes), _length);
        Vector256<byte> head = Vector256.LoadUnsafe(ref source);
        Vector256<byte> tail = Vector256.LoadUnsafe(ref source, 32);
        head.StoreUnsafe(ref target);
        tail.StoreUnsafe(ref target, 32);
        _length += length;
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
