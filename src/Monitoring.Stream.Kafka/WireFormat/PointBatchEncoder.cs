using System.Buffers;
using MessagePack;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>
/// Collects points and writes them as one point message (docs/wire-format.md, version 1): each string
/// and each series once, points as a flat array of series index, timestamp delta and value.
/// </summary>
/// <remarks>Not thread-safe. Reuse one encoder: <see cref="Clear"/> keeps its tables' memory.</remarks>
public sealed class PointBatchEncoder
{
    private readonly Dictionary<string, int> _stringIndex = new(StringComparer.Ordinal);
    private readonly List<string> _strings = [];
    private readonly Dictionary<string, int> _seriesIndex = new(StringComparer.Ordinal);
    private readonly List<int[]> _series = [];
    private DecodedPoint[] _points = new DecodedPoint[256];
    private int _count;

    /// <summary>Points added since the last <see cref="Clear"/>.</summary>
    public int Count => _count;

    /// <summary>Series in the message so far.</summary>
    public int SeriesCount => _series.Count;

    /// <summary>Adds a series to the message's table, once, and returns its index for <see cref="Add(int, double, long)"/>.</summary>
    public int AddSeries(string metric, ReadOnlySpan<Label> labels)
    {
        ArgumentNullException.ThrowIfNull(metric);
        var key = new System.Text.StringBuilder(metric);
        foreach (Label label in labels)
        {
            key.Append('\0').Append(label.Name).Append('\0').Append(label.Value);
        }

        string text = key.ToString();
        if (_seriesIndex.TryGetValue(text, out int index))
        {
            return index;
        }

        int[] entry = new int[1 + (2 * labels.Length)];
        entry[0] = Intern(metric);
        for (int i = 0; i < labels.Length; i++)
        {
            entry[1 + (2 * i)] = Intern(labels[i].Name);
            entry[2 + (2 * i)] = Intern(labels[i].Value);
        }

        index = _series.Count;
        _series.Add(entry);
        _seriesIndex.Add(text, index);
        return index;
    }

    /// <summary>Adds a point of a series added with <see cref="AddSeries"/>.</summary>
    public void Add(int series, double value, long timestampUnixMs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(series);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(series, _series.Count);
        if (_count == _points.Length)
        {
            Array.Resize(ref _points, _points.Length * 2);
        }

        ref DecodedPoint point = ref _points[_count++];
        point.Series = series;
        point.Value = value;
        point.TimestampUnixMs = timestampUnixMs;
    }

    /// <summary>Adds a point, adding its series to the table on first sight.</summary>
    public void Add(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs) =>
        Add(AddSeries(metric, labels), value, timestampUnixMs);

    /// <summary>Writes the message: the smallest timestamp is the base, the others are deltas from it.</summary>
    public void WriteTo(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        long baseTimestamp = long.MaxValue;
        for (int i = 0; i < _count; i++)
        {
            baseTimestamp = Math.Min(baseTimestamp, _points[i].TimestampUnixMs);
        }

        if (_count == 0)
        {
            baseTimestamp = 0;
        }

        var writer = new MessagePackWriter(output);
        writer.WriteArrayHeader(PointMessageFormat.TopLevelElements);
        writer.Write(PointMessageFormat.Version);
        writer.Write(baseTimestamp);
        writer.WriteArrayHeader(_strings.Count);
        foreach (string s in _strings)
        {
            writer.Write(s);
        }

        writer.WriteArrayHeader(_series.Count);
        foreach (int[] entry in _series)
        {
            writer.WriteArrayHeader(entry.Length);
            foreach (int index in entry)
            {
                writer.Write(index);
            }
        }

        writer.WriteArrayHeader(_count * PointMessageFormat.ElementsPerPoint);
        for (int i = 0; i < _count; i++)
        {
            ref DecodedPoint point = ref _points[i];
            writer.Write(point.Series);
            writer.Write(point.TimestampUnixMs - baseTimestamp);
            writer.Write(point.Value);
        }

        writer.Flush();
    }

    /// <summary>Writes the message into a new array.</summary>
    public byte[] ToArray()
    {
        var buffer = new ArrayBufferWriter<byte>(64 + (_count * 12));
        WriteTo(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Forgets the points and the tables, keeping their memory for the next message.</summary>
    public void Clear()
    {
        _count = 0;
        _strings.Clear();
        _stringIndex.Clear();
        _series.Clear();
        _seriesIndex.Clear();
    }

    private int Intern(string s)
    {
        if (!_stringIndex.TryGetValue(s, out int index))
        {
            index = _strings.Count;
            _strings.Add(s);
            _stringIndex.Add(s, index);
        }

        return index;
    }
}
