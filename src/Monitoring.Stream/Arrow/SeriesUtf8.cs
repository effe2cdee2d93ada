using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// A series' strings as the Arrow columns want them: the metric, then each label's name and value,
/// each as a 4-byte little-endian length and its UTF-8 bytes. Kept on the descriptor, so a series
/// is encoded once in its life rather than in every window.
/// </summary>
internal static class SeriesUtf8
{
    public static byte[] Encode(SeriesDescriptor series)
    {
        ReadOnlySpan<Label> labels = series.Labels.AsSpan();
        int size = 4 + Encoding.UTF8.GetByteCount(series.Metric);
        foreach (Label label in labels)
        {
            size += 8 + Encoding.UTF8.GetByteCount(label.Name) + Encoding.UTF8.GetByteCount(label.Value);
        }

        var bytes = new byte[size];
        int at = Put(bytes, 0, series.Metric);
        foreach (Label label in labels)
        {
            at = Put(bytes, at, label.Name);
            at = Put(bytes, at, label.Value);
        }

        return bytes;
    }

    /// <summary>
    /// Appends the string at <paramref name="at"/> to <paramref name="column"/>, which has room for the
    /// whole record reserved (<see cref="ColumnBytes.GetSpan"/>); returns where the next one starts.
    /// </summary>
    /// <remarks>
    /// PERF: a string of at most 64 bytes with 64 bytes of the record from its start (all but the last
    /// strings or two of most records) is copied as 64 bytes, without a branch on its length: names and
    /// values of varied lengths had mispredicted the length tests of <see cref="ColumnBytes.WriteReserved"/>
    /// (a label of "GET" and "POST" in alternate rows, one each row). The column must have
    /// <see cref="CopySlack"/> bytes of room past the record reserved.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Copy(byte[] utf8, int at, ref ColumnBytes column)
    {
        ReadOnlySpan<byte> record = utf8.AsSpan(at);
        int length = BinaryPrimitives.ReadInt32LittleEndian(record);
        int start = at + 4;
        if ((uint)length <= CopySlack && start + CopySlack <= utf8.Length)
        {
            column.WriteReserved64(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(utf8), start), length);
        }
        else
        {
            column.WriteReserved(ref MemoryMarshal.GetReference(record[4..(4 + length)]), length);
        }

        return start + length;
    }

    /// <summary>The room past a record that <see cref="Copy"/> may write into (it copies strings 64 bytes at a time).</summary>
    public const int CopySlack = 64;

    private static int Put(byte[] bytes, int at, string value)
    {
        int length = Encoding.UTF8.GetBytes(value, bytes.AsSpan(at + 4));
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), length);
        return at + 4 + length;
    }
}
