using System.Runtime.CompilerServices;
using Apache.Arrow;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// A growable byte buffer that becomes an Arrow buffer without a copy: the column writers fill it
/// directly, instead of going through Arrow's per-value builders.
/// </summary>
internal struct ColumnBytes
{
    private byte[] _bytes;
    private int _length;

    public ColumnBytes(int capacity)
    {
        _bytes = new byte[Math.Max(capacity, 64)];
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

    public void Write(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        _length += bytes.Length;
    }

    public void WriteUtf8(string value)
    {
        Span<byte> span = GetSpan(System.Text.Encoding.UTF8.GetMaxByteCount(value.Length));
        _length += System.Text.Encoding.UTF8.GetBytes(value, span);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Grow(int size) => System.Array.Resize(ref _bytes, Math.Max(_bytes.Length * 2, _length + size));

    public readonly ArrowBuffer ToArrowBuffer() => new(_bytes.AsMemory(0, _length));

    /// <summary>A validity bitmap with every bit clear (all values null).</summary>
    public static ArrowBuffer AllNull(int rows) => new(new byte[(rows + 7) / 8]);
}
