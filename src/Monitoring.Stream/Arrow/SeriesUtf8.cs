using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Arrow;

/// <summary>
/// A series' strings as the Arrow columns want them, each as a 4-byte little-endian length and its UTF-8
/// bytes. A series' record (<see cref="Encode"/>) starts with the 4-byte index of its metric's record
/// (<see cref="EncodeMetric"/>, kept once per metric by the registry, <see cref="SeriesRegistry.MetricNames"/>),
/// then holds each label's name and value. Kept by the registry, so a series is encoded once in its life
/// rather than in every window.
/// </summary>
/// <remarks>
/// The metric is kept once per metric rather than in every series' record: all series of a metric share
/// its name, which took 40 of the ~107 bytes of a record ("http_server_request_duration_seconds" and three
/// labels, the load benchmark's series), against a budget of 1 KB per series. The index costs 4 bytes.
/// </remarks>
internal static class SeriesUtf8
{
    /// <summary>Where a series' record's labels start: after the index of its metric's record.</summary>
    public const int LabelsStart = 4;

    /// <summary>The record of a series of the metric whose record is at <paramref name="metricIndex"/>: that index, then its labels.</summary>
    public static byte[] Encode(int metricIndex, SeriesDescriptor series)
    {
        ReadOnlySpan<Label> labels = series.Labels.AsSpan();
        int size = LabelsStart;
        foreach (Label label in labels)
        {
            size += 8 + Encoding.UTF8.GetByteCount(label.Name) + Encoding.UTF8.GetByteCount(label.Value);
        }

        var bytes = new byte[size];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, metricIndex);
        int at = LabelsStart;
        foreach (Label label in labels)
        {
            at = Put(bytes, at, label.Name);
            at = Put(bytes, at, label.Value);
        }

        return bytes;
    }

    /// <summary>The index of the metric's record that a series' record starts with.</summary>
    /// <remarks>PERF: read without a length check (every record has its 4-byte index): once a row.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MetricIndex(byte[] utf8) => ReadInt32(ref MemoryMarshal.GetArrayDataReference(utf8));

    /// <summary>Appends the string of a metric's record (<see cref="EncodeMetric"/>) as <see cref="Copy"/> does.</summary>
    /// <remarks>PERF: the record has <see cref="CopySlack"/> bytes past the string's start, so only the string's length is tested, without bounds checks: once a row.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CopyMetric(byte[] metric, ref ColumnBytes column)
    {
        ref byte record = ref MemoryMarshal.GetArrayDataReference(metric);
        int length = ReadInt32(ref record);
        if ((uint)length <= CopySlack)
        {
            column.WriteReserved64(ref Unsafe.Add(ref record, 4), length);
        }
        else
        {
            column.WriteReserved(ref Unsafe.Add(ref record, 4), length);
        }
    }

    /// <summary>A metric's record: its name as one string (a 4-byte length and the bytes), appended by <see cref="CopyMetric"/>.</summary>
    /// <remarks>
    /// PERF: padded to <see cref="CopySlack"/> bytes past the string's start, so a metric of up to 64 bytes
    /// takes the branch-free 64-byte copy, as it did when it led each series' record. One record a metric.
    /// </remarks>
    public static byte[] EncodeMetric(string metric)
    {
        var bytes = new byte[4 + Math.Max(Encoding.UTF8.GetByteCount(metric), CopySlack)];
        Put(bytes, 0, metric);
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ReadInt32(ref byte at)
    {
        int value = Unsafe.ReadUnaligned<int>(ref at);
        return BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value);
    }

    private static int Put(byte[] bytes, int at, string value)
    {
        int length = Encoding.UTF8.GetBytes(value, bytes.AsSpan(at + 4));
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), length);
        return at + 4 + length;
    }
}
