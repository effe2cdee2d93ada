using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Monitoring.Stream.Prometheus;

/// <summary>
/// A growable byte buffer with the few protobuf wire primitives remote write needs (varint, fixed64,
/// length-delimited), reused from request to request.
/// </summary>
internal sealed class ProtoBuffer(int initialCapacity)
{
    private byte[] _data = new byte[initialCapacity];

    public int Length { get; set; }

    public ReadOnlySpan<byte> Written => _data.AsSpan(0, Length);

    public static int VarintLength(ulong value) => value < 0x80 ? 1 : ((64 - BitOperations.LeadingZeroCount(value) + 6) / 7);

    /// <summary>Bytes of a length-delimited field with a one-byte tag and <paramref name="payload"/> bytes of content.</summary>
    public static int FieldLength(int payload) => 1 + VarintLength((ulong)payload) + payload;

    public void Clear() => Length = 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> Reserve(int bytes)
    {
        if (_data.Length - Length < bytes)
        {
            Grow(bytes);
        }

        return _data.AsSpan(Length, bytes);
    }

    public void WriteByte(byte value)
    {
        Reserve(1)[0] = value;
        Length++;
    }

    public void WriteVarint(ulong value)
    {
        Span<byte> span = Reserve(10);
        int i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        span[i++] = (byte)value;
        Length += i;
    }

    public void WriteDouble(double value)
    {
        BinaryPrimitives.WriteDoubleLittleEndian(Reserve(8), value);
        Length += 8;
    }

    public void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Reserve(bytes.Length));
        Length += bytes.Length;
    }

    /// <summary>Writes a length-delimited field: its tag, the length, then the bytes.</summary>
    public void WriteField(byte tag, ReadOnlySpan<byte> bytes)
    {
        WriteByte(tag);
        WriteVarint((ulong)bytes.Length);
        WriteBytes(bytes);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Grow(int bytes)
    {
        int size = Math.Max(_data.Length * 2, Length + bytes);
        Array.Resize(ref _data, size);
    }
}
