using Apache.Arrow;
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
    private byte[] _sketchBuffer = new byte[4096];

    public ArrowWindowWriter(SeriesRegistry registry, int shardCount, Schema schema)
    {
        _registry = registry;
        _shardCount = shardCount;
        _schema = schema;
    }

    public RecordBatch Build(WindowBuffer window, int shard)
    {
        int rows = window.TouchedCount;
        // Rows in slot order: stable output, and series ids ascending within the shard.
        System.Array.Sort(window.Touched, 0, rows);

        DateTimeOffset start = DateTimeOffset.FromUnixTimeMilliseconds(window.Start);
        DateTimeOffset end = DateTimeOffset.FromUnixTimeMilliseconds(window.End);
        var windowStart = new TimestampArray.Builder(WindowSchema.TimestampNanosUtcType).Reserve(rows);
        var windowEnd = new TimestampArray.Builder(WindowSchema.TimestampNanosUtcType).Reserve(rows);
        var metric = new StringArray.Builder();
        var labels = new MapArray.Builder(WindowSchema.LabelsMapType).Reserve(rows);
        var keys = (StringArray.Builder)labels.KeyBuilder;
        var values = (StringArray.Builder)labels.ValueBuilder;
        var count = new Int64Array.Builder().Reserve(rows);
        var doubles = new DoubleArray.Builder[12];
        for (int i = 0; i < doubles.Length; i++)
        {
            doubles[i] = new DoubleArray.Builder().Reserve(rows);
        }

        var sketch = new BinaryArray.Builder().Reserve(rows);
        for (int r = 0; r < rows; r++)
        {
            int slot = window.Touched[r];
            SeriesDescriptor series = _registry.GetDescriptor(new SeriesId((slot * _shardCount) + shard));
            ref RunningMoments m = ref window.Moments[slot];
            windowStart.Append(start);
            windowEnd.Append(end);
            metric.Append(series.Metric);
            labels.Append();
            foreach (Label label in series.Labels.AsSpan())
            {
                keys.Append(label.Name);
                values.Append(label.Value);
            }

            count.Append(m.Count);
            doubles[0].Append(m.Sum);
            doubles[1].Append(m.Min);
            doubles[2].Append(m.Max);
            doubles[3].Append(m.Mean);
            doubles[4].Append(m.M2);
            doubles[5].Append(m.PopulationVariance);
            doubles[6].Append(m.PopulationStdDev);
            doubles[7].Append(m.Last);
            DdSketch? s = window.WithSketches ? window.Sketches[slot] : null;
            if (s is not null)
            {
                s.GetQuantiles(WindowSchema.Quantiles, _quantiles);
                for (int q = 0; q < 4; q++)
                {
                    doubles[8 + q].Append(_quantiles[q]);
                }

                int size = s.GetMaxSerializedSize();
                if (size > _sketchBuffer.Length)
                {
                    _sketchBuffer = new byte[Math.Max(size, _sketchBuffer.Length * 2)];
                }

                int written = s.Serialize(_sketchBuffer);
                sketch.Append(_sketchBuffer.AsSpan(0, written));
            }
            else
            {
                for (int q = 0; q < 4; q++)
                {
                    doubles[8 + q].AppendNull();
                }

                sketch.AppendNull();
            }
        }

        IArrowArray[] columns =
        [
            windowStart.Build(), windowEnd.Build(), metric.Build(), labels.Build(), count.Build(),
            .. doubles.Select(d => (IArrowArray)d.Build()), sketch.Build(),
        ];
        return new RecordBatch(_schema, columns, rows);
    }
}
