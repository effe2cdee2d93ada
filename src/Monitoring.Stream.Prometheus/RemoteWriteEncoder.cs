using System.Runtime.InteropServices;
using System.Text;
using Apache.Arrow;
using Snappier;

namespace Monitoring.Stream.Prometheus;

/// <summary>
/// Turns window batches into snappy-compressed remote-write requests (docs/time-series-sink.md): per row, the
/// cumulative <c>_count</c> and <c>_sum</c>, the quantiles and the window's gauges, each one time series with one
/// sample at the window end. Everything is copied out of the Arrow buffers, so the batch can be reused as soon as
/// <see cref="Encode"/> returns. Not thread-safe: the sink calls it from one task.
/// </summary>
internal sealed class RemoteWriteEncoder
{
    // Field tags: WriteRequest.timeseries = 1, TimeSeries.labels = 1, TimeSeries.samples = 2,
    // Label.name = 1, Label.value = 2 (all length-delimited); Sample.value = 1 (fixed64), Sample.timestamp = 2 (varint).
    private const byte TagField1Bytes = 0x0A;
    private const byte TagField2Bytes = 0x12;
    private const byte TagField1Fixed64 = 0x09;
    private const byte TagField2Varint = 0x10;

    private readonly int _lanes;
    private readonly int _maxRequestBytes;
    private readonly int _maxTrackedSeries;
    private readonly long _idleMs;
    private readonly Action<EncodedRequest> _emit;
    private readonly ProtoBuffer[] _laneBuffers;
    private readonly int[] _laneSamples;
    private readonly Dictionary<byte[], SeriesTotal> _totals = new(SeriesKeyComparer.Instance);
    private readonly Dictionary<byte[], SeriesTotal>.AlternateLookup<ReadOnlySpan<byte>> _lookup;
    private readonly ProtoBuffer _key = new(256);
    private readonly ProtoBuffer _rowBytes = new(256);
    private readonly ProtoBuffer _labels = new(512);
    private LabelEntry[] _entries = new LabelEntry[16];
    private int[] _segmentEnds = new int[16];
    private byte[] _compressed = [];
    private string? _instance;
    private byte[] _instanceBytes = [];
    private long _sequence;
    private long _lastSweepMs = long.MinValue;

    public RemoteWriteEncoder(int lanes, int maxRequestBytes, int maxTrackedSeries, TimeSpan seriesIdleTimeout, Action<EncodedRequest> emit)
    {
        _lanes = lanes;
        _maxRequestBytes = maxRequestBytes;
        _maxTrackedSeries = maxTrackedSeries;
        _idleMs = (long)seriesIdleTimeout.TotalMilliseconds;
        _emit = emit;
        _laneBuffers = [.. Enumerable.Range(0, lanes).Select(_ => new ProtoBuffer(Math.Min(maxRequestBytes, 64 * 1024)))];
        _laneSamples = new int[lanes];
        _lookup = _totals.GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    /// <summary>Series whose running totals are kept.</summary>
    public int TrackedSeries => _totals.Count;

    /// <summary>Series forgotten so far, idle or beyond the bound; each restarts its counters from zero if it returns.</summary>
    public long SeriesForgotten { get; private set; }

    /// <summary>Encodes every row of <paramref name="batch"/> and hands the requests to the emit callback, in order.</summary>
    /// <returns>The samples encoded.</returns>
    public long Encode(RecordBatch batch, long windowEndMs, string instance)
    {
        if (!string.Equals(instance, _instance, StringComparison.Ordinal))
        {
            _instance = instance;
            _instanceBytes = Encoding.UTF8.GetBytes(instance);
        }

        var metric = (StringArray)batch.Column("metric");
        var labels = (MapArray)batch.Column("labels");
        var keys = (StringArray)labels.Keys;
        var values = (StringArray)labels.Values;
        ReadOnlySpan<int> offsets = labels.ValueOffsets;
        ReadOnlySpan<long> count = ((Int64Array)batch.Column("count")).Values;
        ReadOnlySpan<double> sum = ((DoubleArray)batch.Column("sum")).Values;
        ReadOnlySpan<double> min = ((DoubleArray)batch.Column("min")).Values;
        ReadOnlySpan<double> max = ((DoubleArray)batch.Column("max")).Values;
        ReadOnlySpan<double> mean = ((DoubleArray)batch.Column("mean")).Values;
        ReadOnlySpan<double> stddev = ((DoubleArray)batch.Column("stddev")).Values;
        ReadOnlySpan<double> last = ((DoubleArray)batch.Column("last")).Values;
        DoubleArray[] quantiles = [(DoubleArray)batch.Column("p50"), (DoubleArray)batch.Column("p90"), (DoubleArray)batch.Column("p95"), (DoubleArray)batch.Column("p99")];

        long samples = 0;
        for (int row = 0; row < batch.Length; row++)
        {
            ReadOnlySpan<byte> name = metric.GetBytes(row);
            int lane = PrepareLabels(name, keys, values, offsets[row], offsets[row + 1]);

            ref SeriesTotal total = ref CollectionsMarshal.GetValueRefOrAddDefault(_lookup, _key.Written, out _);
            total.Count += count[row];
            total.Sum += sum[row];
            total.LastWindowEndMs = windowEndMs;

            ReadOnlySpan<byte> family = FamilyName(name);
            AddSeries(lane, family, "_count"u8, default, total.Count, windowEndMs);
            AddSeries(lane, family, "_sum"u8, default, total.Sum, windowEndMs);
            samples += 2;
            for (int q = 0; q < quantiles.Length; q++)
            {
                double? value = quantiles[q].GetValue(row);
                if (value is double v)
                {
                    AddSeries(lane, family, default, QuantileLabel(q), v, windowEndMs);
                    samples++;
                }
            }

            AddSeries(lane, family, "_min"u8, default, min[row], windowEndMs);
            AddSeries(lane, family, "_max"u8, default, max[row], windowEndMs);
            AddSeries(lane, family, "_mean"u8, default, mean[row], windowEndMs);
            AddSeries(lane, family, "_stddev"u8, default, stddev[row], windowEndMs);
            AddSeries(lane, family, "_last"u8, default, last[row], windowEndMs);
            samples += 5;
        }

        for (int lane = 0; lane < _lanes; lane++)
        {
            Flush(lane);
        }

        Sweep(windowEndMs);
        return samples;
    }

    /// <summary>
    /// The family name the suffixes attach to: a trailing <c>_total</c> (a counter's suffix, which must not sit in
    /// the middle of a name) is removed; a unit such as <c>_seconds</c> stays, as in Prometheus' own summaries.
    /// </summary>
    internal static ReadOnlySpan<byte> FamilyName(ReadOnlySpan<byte> metric) =>
        metric.Length > 6 && metric.EndsWith("_total"u8) ? metric[..^6] : metric;

    /// <summary>Splits a request in two halves of whole time series, for a receiver that answered 413; null when it holds one series.</summary>
    internal static (byte[] First, int FirstSamples, byte[] Second, int SecondSamples)? Split(byte[] body)
    {
        byte[] raw = Snappy.DecompressToArray(body);
        var starts = new List<int>();
        int position = 0;
        while (position < raw.Length)
        {
            starts.Add(position);
            position++; // the tag: always field 1, length-delimited, in requests of this encoder
            ulong length = 0;
            int shift = 0;
            byte b;
            do
            {
                b = raw[position++];
                length |= (ulong)(b & 0x7F) << shift;
                shift += 7;
            }
            while ((b & 0x80) != 0);
            position += (int)length;
        }

        if (starts.Count < 2)
        {
            return null;
        }

        int middle = starts[starts.Count / 2];
        return (Snappy.CompressToArray(raw.AsSpan(0, middle)), starts.Count / 2,
            Snappy.CompressToArray(raw.AsSpan(middle)), starts.Count - (starts.Count / 2));
    }

    private static ReadOnlySpan<byte> QuantileLabel(int q) => q switch
    {
        0 => "0.5"u8,
        1 => "0.9"u8,
        2 => "0.95"u8,
        _ => "0.99"u8,
    };

    /// <summary>
    /// Builds the row's series key (metric and labels, for the running totals and the lane) and the encoded
    /// Label fields shared by all its time series, sorted by name, with the instance label added; a label of the
    /// series named <c>instance</c> or <c>quantile</c> becomes <c>exported_instance</c> / <c>exported_quantile</c>,
    /// as Prometheus does for scraped labels that collide with its own.
    /// </summary>
    private int PrepareLabels(ReadOnlySpan<byte> metric, StringArray keys, StringArray values, int from, int to)
    {
        _key.Clear();
        _rowBytes.Clear();
        _key.WriteVarint((ulong)metric.Length);
        _key.WriteBytes(metric);
        int n = 0;
        EnsureEntries(to - from + 1);
        for (int i = from; i < to; i++)
        {
            ReadOnlySpan<byte> name = keys.GetBytes(i);
            ReadOnlySpan<byte> value = values.GetBytes(i);
            _key.WriteVarint((ulong)name.Length);
            _key.WriteBytes(name);
            _key.WriteVarint((ulong)value.Length);
            _key.WriteBytes(value);
            if (name.SequenceEqual("instance"u8))
            {
                name = "exported_instance"u8;
            }
            else if (name.SequenceEqual("quantile"u8))
            {
                name = "exported_quantile"u8;
            }

            _entries[n++] = AddEntry(name, value);
        }

        _entries[n++] = AddEntry("instance"u8, _instanceBytes);

        // Insertion sort: a handful of labels, almost always sorted already.
        for (int i = 1; i < n; i++)
        {
            LabelEntry entry = _entries[i];
            int j = i - 1;
            while (j >= 0 && Name(_entries[j]).SequenceCompareTo(Name(entry)) > 0)
            {
                _entries[j + 1] = _entries[j];
                j--;
            }

            _entries[j + 1] = entry;
        }

        _labels.Clear();
        _nameIndex = 0;
        _quantileIndex = 0;
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<byte> name = Name(_entries[i]);
            ReadOnlySpan<byte> value = _rowBytes.Written.Slice(_entries[i].ValueStart, _entries[i].ValueLength);
            WriteLabel(_labels, name, default, value);
            _segmentEnds[i] = _labels.Length;
            if (name.SequenceCompareTo("__name__"u8) < 0)
            {
                _nameIndex = i + 1;
            }

            if (name.SequenceCompareTo("quantile"u8) < 0)
            {
                _quantileIndex = i + 1;
            }
        }

        var hash = default(HashCode);
        hash.AddBytes(_key.Written);
        return (int)((uint)hash.ToHashCode() % (uint)_lanes);
    }

    private int _nameIndex;
    private int _quantileIndex;

    private ReadOnlySpan<byte> Name(LabelEntry entry) => _rowBytes.Written.Slice(entry.NameStart, entry.NameLength);

    private LabelEntry AddEntry(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        var entry = new LabelEntry(_rowBytes.Length, name.Length, _rowBytes.Length + name.Length, value.Length);
        _rowBytes.WriteBytes(name);
        _rowBytes.WriteBytes(value);
        return entry;
    }

    private void EnsureEntries(int count)
    {
        if (_entries.Length < count)
        {
            _entries = new LabelEntry[count * 2];
            _segmentEnds = new int[count * 2];
        }
    }

    private static int LabelLength(int nameLength, int valueLength) =>
        ProtoBuffer.FieldLength(ProtoBuffer.FieldLength(nameLength) + ProtoBuffer.FieldLength(valueLength));

    /// <summary>Writes one TimeSeries.labels field; the value is <paramref name="value"/> after <paramref name="valuePrefix"/>.</summary>
    private static void WriteLabel(ProtoBuffer buffer, ReadOnlySpan<byte> name, ReadOnlySpan<byte> valuePrefix, ReadOnlySpan<byte> value)
    {
        int valueLength = valuePrefix.Length + value.Length;
        buffer.WriteByte(TagField1Bytes);
        buffer.WriteVarint((ulong)(ProtoBuffer.FieldLength(name.Length) + ProtoBuffer.FieldLength(valueLength)));
        buffer.WriteField(TagField1Bytes, name);
        buffer.WriteByte(TagField2Bytes);
        buffer.WriteVarint((ulong)valueLength);
        buffer.WriteBytes(valuePrefix);
        buffer.WriteBytes(value);
    }

    private void AddSeries(int lane, ReadOnlySpan<byte> family, ReadOnlySpan<byte> suffix, ReadOnlySpan<byte> quantile, double value, long timestampMs)
    {
        int nameLabel = LabelLength(8, family.Length + suffix.Length);
        int quantileLabel = quantile.IsEmpty ? 0 : LabelLength(8, quantile.Length);
        int sample = 1 + 8 + 1 + ProtoBuffer.VarintLength((ulong)timestampMs);
        int series = _labels.Length + nameLabel + quantileLabel + ProtoBuffer.FieldLength(sample);
        int total = ProtoBuffer.FieldLength(series);

        ProtoBuffer buffer = _laneBuffers[lane];
        if (buffer.Length > 0 && buffer.Length + total > _maxRequestBytes)
        {
            Flush(lane);
        }

        ReadOnlySpan<byte> labels = _labels.Written;
        int nameAt = _nameIndex == 0 ? 0 : _segmentEnds[_nameIndex - 1];
        int quantileAt = _quantileIndex == 0 ? 0 : _segmentEnds[_quantileIndex - 1];
        buffer.WriteByte(TagField1Bytes);
        buffer.WriteVarint((ulong)series);
        buffer.WriteBytes(labels[..nameAt]);
        WriteLabel(buffer, "__name__"u8, family, suffix);
        if (quantile.IsEmpty)
        {
            buffer.WriteBytes(labels[nameAt..]);
        }
        else
        {
            buffer.WriteBytes(labels[nameAt..quantileAt]);
            WriteLabel(buffer, "quantile"u8, default, quantile);
            buffer.WriteBytes(labels[quantileAt..]);
        }

        buffer.WriteByte(TagField2Bytes);
        buffer.WriteVarint((ulong)sample);
        buffer.WriteByte(TagField1Fixed64);
        buffer.WriteDouble(value);
        buffer.WriteByte(TagField2Varint);
        buffer.WriteVarint((ulong)timestampMs);
        _laneSamples[lane]++;
    }

    private void Flush(int lane)
    {
        ProtoBuffer buffer = _laneBuffers[lane];
        if (buffer.Length == 0)
        {
            return;
        }

        int bound = Snappy.GetMaxCompressedLength(buffer.Length);
        if (_compressed.Length < bound)
        {
            _compressed = new byte[bound];
        }

        int length = Snappy.Compress(buffer.Written, _compressed);
        _emit(new EncodedRequest(_compressed.AsSpan(0, length).ToArray(), _laneSamples[lane], lane, _sequence++));
        buffer.Clear();
        _laneSamples[lane] = 0;
    }

    /// <summary>Forgets series idle for longer than the timeout, and the longest-unseen ones beyond the bound.</summary>
    private void Sweep(long windowEndMs)
    {
        if (_lastSweepMs == long.MinValue)
        {
            _lastSweepMs = windowEndMs;
        }

        if (windowEndMs - _lastSweepMs >= _idleMs / 4)
        {
            _lastSweepMs = windowEndMs;
            foreach (KeyValuePair<byte[], SeriesTotal> entry in _totals)
            {
                if (windowEndMs - entry.Value.LastWindowEndMs > _idleMs)
                {
                    _totals.Remove(entry.Key);
                    SeriesForgotten++;
                }
            }
        }

        if (_totals.Count > _maxTrackedSeries)
        {
            int target = Math.Max(1, _maxTrackedSeries - (_maxTrackedSeries / 10));
            KeyValuePair<byte[], SeriesTotal>[] all = [.. _totals];
            System.Array.Sort(all, static (a, b) => a.Value.LastWindowEndMs.CompareTo(b.Value.LastWindowEndMs));
            for (int i = 0; i < all.Length - target; i++)
            {
                _totals.Remove(all[i].Key);
                SeriesForgotten++;
            }
        }
    }

    private record struct LabelEntry(int NameStart, int NameLength, int ValueStart, int ValueLength);

    private struct SeriesTotal
    {
        public long Count;
        public double Sum;
        public long LastWindowEndMs;
    }
}
