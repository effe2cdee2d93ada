using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Apache.Arrow;
using Apache.Arrow.Types;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Windows;

namespace Monitoring.Stream.Arrow;

/// <summary>Turns a closed window of one shard into an Arrow record batch with the <see cref="WindowSchema"/> layout.</summary>
internal sealed class ArrowWindowWriter
{
    private readonly SeriesRegistry _registry;
    private readonly int _shardCount;
    private readonly Schema _schema;
    private readonly double[] _quantiles = new double[4];

    // The metric of the last series whose names this writer encoded, and its record's index in the registry's MetricNames.
    private string? _lastMetric;
    private int _lastMetricIndex;

    // A private pool: the shared one made a window of 100,000 series 40 % slower to build on one shard
    // (59 vs 43 ms: its per-core caches miss for arrays this size, so most columns were fresh
    // allocations). It keeps at most twice the columns of the largest recent window (ColumnArrayPool).
    private readonly ColumnArrayPool _pool = new();

    /// <summary>How many rows ahead the sketch objects are requested; their arrays are requested half as far ahead.</summary>
    private const int PrefetchDistance = 8;

    public ArrowWindowWriter(SeriesRegistry registry, int shardCount, Schema schema)
    {
        _registry = registry;
        _shardCount = shardCount;
        _schema = schema;
    }

    /// <summary>The pool of this writer's column arrays: what it keeps, and what emitted batches still hold.</summary>
    public ColumnArrayPool Pool => _pool;

    /// <summary>Builds the record batch of one closed window of one shard.</summary>
    /// <remarks>
    /// PERF: columns are written straight into byte buffers that become Arrow buffers without a
    /// copy. Arrow's per-value builders encoded each string into a new array and grew every buffer
    /// by reallocation; for a window of 100,000 series that was most of the time spent here.
    /// </remarks>
    /// <param name="window">The closed window.</param>
    /// <param name="shard">The shard it belongs to.</param>
    /// <param name="sequence">The shard's emission sequence number of this batch, written into its metadata.</param>
    /// <returns>A batch whose columns own pooled arrays: disposing it (and every batch shared from it) returns them.</returns>
    public RecordBatch Build(WindowBuffer window, int shard, long sequence)
    {
        int rows = window.TouchedCount;
        _pool.Trim();
        // Rows in slot order: stable output, and series ids ascending within the shard.
        window.SortTouched();

        long startNs = window.Start * 1_000_000;
        long endNs = window.End * 1_000_000;
        var windowStart = new ColumnBytes(rows * 8, _pool);
        var windowEnd = new ColumnBytes(rows * 8, _pool);
        windowStart.Fill(startNs, rows);
        windowEnd.Fill(endNs, rows);
        var metricOffsets = new ColumnBytes((rows + 1) * 4, _pool);
        var metricData = new ColumnBytes(rows * 40, _pool);
        var mapOffsets = new ColumnBytes((rows + 1) * 4, _pool);
        var keyOffsets = new ColumnBytes(((rows * 3) + 1) * 4, _pool);
        var keyData = new ColumnBytes(rows * 24, _pool);
        var valueOffsets = new ColumnBytes(((rows * 3) + 1) * 4, _pool);
        var valueData = new ColumnBytes(rows * 32, _pool);
        var count = new ColumnBytes(rows * 8, _pool);
        var doubles = new ColumnBytes[12];
        for (int i = 0; i < doubles.Length; i++)
        {
            doubles[i] = new ColumnBytes(rows * 8, _pool);
        }

        var sketchOffsets = new ColumnBytes((rows + 1) * 4, _pool);
        var sketchData = new ColumnBytes(window.WithSketches ? rows * 160 : 0, _pool);
        keyOffsets.Write(0);
        valueOffsets.Write(0);

        int pairs = FillRows(window, shard, rows, ref count, doubles, ref metricOffsets, ref metricData, ref mapOffsets,
            ref keyOffsets, ref keyData, ref valueOffsets, ref valueData, ref sketchOffsets, ref sketchData);
        var keys = new StringArray(pairs, keyOffsets.ToArrowBuffer(), keyData.ToArrowBuffer(), ArrowBuffer.Empty, 0, 0);
        var values = new StringArray(pairs, valueOffsets.ToArrowBuffer(), valueData.ToArrowBuffer(), ArrowBuffer.Empty, 0, 0);
        var entries = new StructArray(WindowSchema.LabelsMapType.KeyValueType, pairs, [keys, values], ArrowBuffer.Empty, 0, 0);
        bool sketches = window.WithSketches;
        ArrowBuffer quantileValidity = sketches ? ArrowBuffer.Empty : ColumnBytes.AllNull(rows);
        int quantileNulls = sketches ? 0 : rows;
        var columns = new List<IArrowArray>(18)
        {
            new TimestampArray(WindowSchema.TimestampNanosUtcType, windowStart.ToArrowBuffer(), ArrowBuffer.Empty, rows, 0, 0),
            new TimestampArray(WindowSchema.TimestampNanosUtcType, windowEnd.ToArrowBuffer(), ArrowBuffer.Empty, rows, 0, 0),
            new StringArray(rows, metricOffsets.ToArrowBuffer(), metricData.ToArrowBuffer(), ArrowBuffer.Empty, 0, 0),
            new MapArray(WindowSchema.LabelsMapType, rows, mapOffsets.ToArrowBuffer(), entries, ArrowBuffer.Empty, 0, 0),
            new Int64Array(count.ToArrowBuffer(), ArrowBuffer.Empty, rows, 0, 0),
        };
        for (int i = 0; i < 8; i++)
        {
            columns.Add(new DoubleArray(doubles[i].ToArrowBuffer(), ArrowBuffer.Empty, rows, 0, 0));
        }

        for (int i = 8; i < 12; i++)
        {
            columns.Add(new DoubleArray(doubles[i].ToArrowBuffer(), quantileValidity, rows, quantileNulls, 0));
        }

        columns.Add(new BinaryArray(BinaryType.Default, rows, sketchOffsets.ToArrowBuffer(), sketchData.ToArrowBuffer(),
            sketches ? ArrowBuffer.Empty : ColumnBytes.AllNull(rows), sketches ? 0 : rows, 0));
        return new RecordBatch(BatchSchema(window, shard, sequence), columns, rows);
    }

    /// <summary>Fills every row of the batch's columns from the window state; returns the number of label pairs written.</summary>
    /// <remarks>
    /// PERF: three passes over the rows, one per kind of state (names; moments; sketches), each in its own
    /// method optimized from the first call. A shard builds one batch a window (every 10 s by default), so
    /// tiering ran a row loop as on-stack-replaced code for minutes. One loop doing all three had so much
    /// inlined into it that the JIT's budget ran out (the moments getters and the summary bound stayed
    /// calls, with the loop's twenty column references spilled around each), and its body was too long
    /// for the processor to keep many rows' cold loads in flight at once.
    /// </remarks>
    private int FillRows(WindowBuffer window, int shard, int rows, ref ColumnBytes count, ColumnBytes[] doubles, ref ColumnBytes metricOffsets,
        ref ColumnBytes metricData, ref ColumnBytes mapOffsets, ref ColumnBytes keyOffsets, ref ColumnBytes keyData, ref ColumnBytes valueOffsets,
        ref ColumnBytes valueData, ref ColumnBytes sketchOffsets, ref ColumnBytes sketchData)
    {
        int pairs = FillNames(window, shard, rows, ref metricOffsets, ref metricData, ref mapOffsets, ref keyOffsets, ref keyData, ref valueOffsets, ref valueData);
        FillMoments(window, rows, count.Take<long>(rows), doubles);
        FillSketches(window, rows, doubles, ref sketchOffsets, ref sketchData);
        return pairs;
    }

    /// <summary>The metric and label columns of every row; returns the number of label pairs written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int FillNames(WindowBuffer window, int shard, int rows, ref ColumnBytes metricOffsets, ref ColumnBytes metricData, ref ColumnBytes mapOffsets,
        ref ColumnBytes keyOffsets, ref ColumnBytes keyData, ref ColumnBytes valueOffsets, ref ColumnBytes valueData)
    {
        ref int metricEnds = ref MemoryMarshal.GetReference(metricOffsets.Take<int>(rows + 1));
        ref int mapEnds = ref MemoryMarshal.GetReference(mapOffsets.Take<int>(rows + 1));
        metricEnds = 0;
        mapEnds = 0;
        int[] touched = window.Touched;
        int shardCount = _shardCount;
        int pairs = 0;
        byte[]?[] names = _registry.Names;
        byte[]?[] metricNames = _registry.MetricNames;
        byte[] metric = [];
        int lastMetricIndex = -1;
        for (int r = 0; r < rows; r++)
        {
            if (r + PrefetchDistance < rows)
            {
                // PERF: each row's names are a cold object; the row this far ahead is requested now, so that
                // its miss overlaps this row's copies.
                int ahead = (touched[r + PrefetchDistance] * shardCount) + shard;
                if ((uint)ahead < (uint)names.Length)
                {
                    Prefetch.Lines(names[ahead], 2);
                }
            }

            // PERF: each series' names are encoded once, on its first window, and kept by the registry
            // by id (read in id order here: the descriptor objects stay cold). Each column has room for
            // the whole record reserved once a row, so the strings are copied without a capacity check each.
            int id = (touched[r] * shardCount) + shard;
            byte[] utf8 = ((uint)id < (uint)names.Length ? names[id] : null) ?? EncodeNames(id);
            // PERF: the metric's record is kept once per metric (36 bytes fewer per series for a typical
            // name) and looked up only when a row's metric differs from the previous row's. The lookup
            // waits for the row's cold record; made on every row, that data dependency made the one-shard
            // build of 100,000 series of one metric ~1 ms (6 %) slower, where a predicted branch is not waited for.
            int metricIndex = SeriesUtf8.MetricIndex(utf8);
            if (metricIndex != lastMetricIndex)
            {
                byte[]? found = (uint)metricIndex < (uint)metricNames.Length ? metricNames[metricIndex] : null;
                if (found is null)
                {
                    // Made after the snapshot was taken: at this metric's first window.
                    found = _registry.GetMetricNames(metricIndex);
                    metricNames = _registry.MetricNames;
                }

                metric = found;
                lastMetricIndex = metricIndex;
            }

            metricData.GetSpan(metric.Length + SeriesUtf8.CopySlack);
            keyData.GetSpan(utf8.Length + SeriesUtf8.CopySlack);
            valueData.GetSpan(utf8.Length + SeriesUtf8.CopySlack);
            SeriesUtf8.CopyMetric(metric, ref metricData);
            Unsafe.Add(ref metricEnds, r + 1) = metricData.Length;
            int at = SeriesUtf8.LabelsStart;
            // The label count comes from the bytes too: the labels array itself stays cold.
            while (at < utf8.Length)
            {
                at = SeriesUtf8.Copy(utf8, at, ref keyData);
                keyOffsets.Write(keyData.Length);
                at = SeriesUtf8.Copy(utf8, at, ref valueData);
                valueOffsets.Write(valueData.Length);
                pairs++;
            }

            Unsafe.Add(ref mapEnds, r + 1) = pairs;
        }

        return pairs;
    }

    /// <summary>The count and the eight moments columns of every row (the moments are inline in the window, in slot order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FillMoments(WindowBuffer window, int rows, Span<long> countColumn, ColumnBytes[] doubles)
    {
        // PERF: fixed-width columns are filled by row index through refs taken once, rather than appended
        // value by value through each column's length and capacity check.
        ref long counts = ref MemoryMarshal.GetReference(countColumn);
        ref double sums = ref MemoryMarshal.GetReference(doubles[0].Take<double>(rows));
        ref double mins = ref MemoryMarshal.GetReference(doubles[1].Take<double>(rows));
        ref double maxes = ref MemoryMarshal.GetReference(doubles[2].Take<double>(rows));
        ref double means = ref MemoryMarshal.GetReference(doubles[3].Take<double>(rows));
        ref double m2s = ref MemoryMarshal.GetReference(doubles[4].Take<double>(rows));
        ref double variances = ref MemoryMarshal.GetReference(doubles[5].Take<double>(rows));
        ref double deviations = ref MemoryMarshal.GetReference(doubles[6].Take<double>(rows));
        ref double lasts = ref MemoryMarshal.GetReference(doubles[7].Take<double>(rows));
        RunningMoments[] moments = window.Moments;
        int[] touched = window.Touched;
        for (int r = 0; r < rows; r++)
        {
            ref RunningMoments m = ref moments[touched[r]];
            Unsafe.Add(ref counts, r) = m.Count;
            Unsafe.Add(ref sums, r) = m.Sum;
            Unsafe.Add(ref mins, r) = m.Min;
            Unsafe.Add(ref maxes, r) = m.Max;
            Unsafe.Add(ref means, r) = m.Mean;
            Unsafe.Add(ref m2s, r) = m.M2;
            double variance = m.PopulationVariance;
            Unsafe.Add(ref variances, r) = variance;
            Unsafe.Add(ref deviations, r) = Math.Sqrt(variance);
            Unsafe.Add(ref lasts, r) = m.Last;
        }
    }

    /// <summary>The sketch bytes and the four quantile columns of every row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FillSketches(WindowBuffer window, int rows, ColumnBytes[] doubles, ref ColumnBytes sketchOffsets, ref ColumnBytes sketchData)
    {
        ref double p50 = ref MemoryMarshal.GetReference(doubles[8].Take<double>(rows));
        ref double p90 = ref MemoryMarshal.GetReference(doubles[9].Take<double>(rows));
        ref double p95 = ref MemoryMarshal.GetReference(doubles[10].Take<double>(rows));
        ref double p99 = ref MemoryMarshal.GetReference(doubles[11].Take<double>(rows));
        ref int sketchEnds = ref MemoryMarshal.GetReference(sketchOffsets.Take<int>(rows + 1));
        sketchEnds = 0;
        Span<double> quantiles = _quantiles;
        DdSketch?[] sketchOf = window.Sketches;
        int[] touched = window.Touched;
        bool withSketches = sketchOf.Length > 0;
        const int Half = PrefetchDistance / 2;
        for (int r = 0; r < rows; r++)
        {
            if (withSketches)
            {
                // PERF: each row is a pointer chase (sketch, then its bins) into memory that is cold for a
                // window of many series. The sketch object of the row PrefetchDistance ahead and the bins of
                // the row half as far ahead are requested now, so their misses overlap this row's work. The
                // bins are requested without reading their array's length (Prefetch.Lines): reading the
                // length of a cold array to bound the hints was itself a miss that stalled the row.
                if (r + PrefetchDistance < rows)
                {
                    Prefetch.Object(sketchOf[touched[r + PrefetchDistance]]);
                }

                if (r + Half < rows)
                {
                    sketchOf[touched[r + Half]]?.PrefetchBins();
                }
            }

            DdSketch? s = withSketches ? sketchOf[touched[r]] : null;
            if (s is not null)
            {
                sketchData.Advance(s.WriteSummary(sketchData.GetSpan(s.SummaryBound), WindowSchema.Quantiles, quantiles));
                Unsafe.Add(ref p50, r) = quantiles[0];
                Unsafe.Add(ref p90, r) = quantiles[1];
                Unsafe.Add(ref p95, r) = quantiles[2];
                Unsafe.Add(ref p99, r) = quantiles[3];
            }
            else
            {
                Unsafe.Add(ref p50, r) = double.NaN;
                Unsafe.Add(ref p90, r) = double.NaN;
                Unsafe.Add(ref p95, r) = double.NaN;
                Unsafe.Add(ref p99, r) = double.NaN;
            }

            Unsafe.Add(ref sketchEnds, r + 1) = sketchData.Length;
        }
    }

    /// <summary>Encodes the names of the series at <paramref name="index"/>, on its first window, and has the registry keep them.</summary>
    /// <remarks>
    /// PERF: the index of the series' metric's record is asked of the registry (under its lock) only when
    /// the metric differs from the previous series': a window's new series are mostly of few metrics.
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte[] EncodeNames(int index)
    {
        SeriesDescriptor series = _registry.GetDescriptor(new SeriesId(index));
        if (!string.Equals(series.Metric, _lastMetric))
        {
            _lastMetricIndex = _registry.GetMetricNamesIndex(series.Metric, SeriesUtf8.EncodeMetric);
            _lastMetric = series.Metric;
        }

        byte[] utf8 = SeriesUtf8.Encode(_lastMetricIndex, series);
        _registry.SetNames(index, utf8);
        return utf8;
    }

    /// <summary>The schema with this batch's window, shard and sequence in its metadata, so a lone batch says where it comes from.</summary>
    private Schema BatchSchema(WindowBuffer window, int shard, long sequence)
    {
        var metadata = new Dictionary<string, string>(_schema.Metadata, StringComparer.Ordinal)
        {
            [WindowSchema.WindowStartKey] = window.Start.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [WindowSchema.WindowEndKey] = window.End.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [WindowSchema.ShardKey] = shard.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [WindowSchema.SequenceKey] = sequence.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        return new Schema(_schema.FieldsList, metadata);
    }
}
