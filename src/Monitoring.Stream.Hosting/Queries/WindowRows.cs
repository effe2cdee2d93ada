using System.Buffers.Binary;
using Apache.Arrow;
using Monitoring.Stream.Model;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>Reads the rows of an emitted window batch (columns of docs/arrow-schema.md) back into aggregates.</summary>
internal sealed class WindowRows
{
    private const long NanosPerMilli = 1_000_000;
    private readonly TimestampArray _start;
    private readonly TimestampArray _end;
    private readonly StringArray _metric;
    private readonly MapArray _labels;
    private readonly StringArray _keys;
    private readonly StringArray _values;
    private readonly Int64Array _count;
    private readonly DoubleArray _sum;
    private readonly DoubleArray _min;
    private readonly DoubleArray _max;
    private readonly DoubleArray _mean;
    private readonly DoubleArray _m2;
    private readonly DoubleArray _last;
    private readonly BinaryArray _sketch;

    public WindowRows(RecordBatch batch)
    {
        Length = batch.Length;
        _start = (TimestampArray)batch.Column("window_start");
        _end = (TimestampArray)batch.Column("window_end");
        _metric = (StringArray)batch.Column("metric");
        _labels = (MapArray)batch.Column("labels");
        _keys = (StringArray)_labels.Keys;
        _values = (StringArray)_labels.Values;
        _count = (Int64Array)batch.Column("count");
        _sum = (DoubleArray)batch.Column("sum");
        _min = (DoubleArray)batch.Column("min");
        _max = (DoubleArray)batch.Column("max");
        _mean = (DoubleArray)batch.Column("mean");
        _m2 = (DoubleArray)batch.Column("m2");
        _last = (DoubleArray)batch.Column("last");
        _sketch = (BinaryArray)batch.Column("sketch");
    }

    public int Length { get; }

    public long StartUnixMs(int row) => _start.Values[row] / NanosPerMilli;

    public long EndUnixMs(int row) => _end.Values[row] / NanosPerMilli;

    public string Metric(int row) => _metric.GetString(row);

    public bool MetricEquals(int row, ReadOnlySpan<byte> utf8) => _metric.GetBytes(row).SequenceEqual(utf8);

    public LabelSet Labels(int row)
    {
        int first = _labels.ValueOffsets[row];
        int end = _labels.ValueOffsets[row + 1];
        if (first == end)
        {
            return LabelSet.Empty;
        }

        var pairs = new Label[end - first];
        for (int i = first; i < end; i++)
        {
            pairs[i - first] = new Label(_keys.GetString(i), _values.GetString(i));
        }

        return LabelSet.Create(pairs);
    }

    /// <summary>
    /// Writes the row's labels as bytes that are equal for two rows exactly when their labels are (each
    /// name and value length-prefixed) into <paramref name="buffer"/>, grown as needed; returns the length.
    /// </summary>
    public int WriteLabelSignature(int row, ref byte[] buffer)
    {
        int first = _labels.ValueOffsets[row];
        int end = _labels.ValueOffsets[row + 1];
        int length = 0;
        for (int i = first; i < end; i++)
        {
            length = Append(ref buffer, length, _keys.GetBytes(i));
            length = Append(ref buffer, length, _values.GetBytes(i));
        }

        return length;

        static int Append(ref byte[] buffer, int at, ReadOnlySpan<byte> bytes)
        {
            int needed = at + sizeof(int) + bytes.Length;
            if (needed > buffer.Length)
            {
                System.Array.Resize(ref buffer, Math.Max(needed, buffer.Length * 2));
            }

            BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(at), bytes.Length);
            bytes.CopyTo(buffer.AsSpan(at + sizeof(int)));
            return needed;
        }
    }

    public WindowAggregate Aggregate(int row)
    {
        ReadOnlySpan<byte> bytes = SketchBytes(row);
        DdSketch? sketch = bytes.IsEmpty ? null : DdSketch.Deserialize(bytes);
        return new WindowAggregate(StartUnixMs(row), EndUnixMs(row), Moments(row), sketch);
    }

    public RunningMoments Moments(int row) =>
        // The window's last value is stamped at the window's last millisecond: across windows the later window's last wins.
        RunningMoments.FromParts(_count.Values[row], _sum.Values[row], _min.Values[row], _max.Values[row],
            _mean.Values[row], _m2.Values[row], _last.Values[row], EndUnixMs(row) - 1);

    /// <summary>The row's serialized sketch; empty when the engine keeps none.</summary>
    public ReadOnlySpan<byte> SketchBytes(int row) => _sketch.IsNull(row) ? [] : _sketch.GetBytes(row);
}
