using System.Security.Cryptography;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;
using Monitoring.Stream.Windows;

namespace Monitoring.Stream.Tests.Arrow;

public class ArrowWindowWriterTests
{
    // SHA-256 of the IPC files below as written by main at 319b88b, before any change to the writer's
    // row loop: a later change to how rows are filled must keep every byte.
    private const string ExpectedWithSketches = "1FFB7378F8AD158C30E8BFD6F7AFC502D4CD8A998867976080A893F76C93C634";
    private const string ExpectedWithoutSketches = "AE8461E7448BF5C2297DCBA6003A421B8AFA3E6631D8D9A8472FF9073FC45694";

    [Fact]
    public void Build_MixedWindows_FileBytesEqualThoseOfTheReferenceWriter()
    {
        List<byte[]> files = BuildFiles(withSketches: true);
        Assert.Equal(ExpectedWithSketches, Hash(files[0]));
        Assert.Equal(ExpectedWithSketches, Hash(files[1]));
    }

    [Fact]
    public void Build_WindowsWithoutSketches_FileBytesEqualThoseOfTheReferenceWriter()
    {
        List<byte[]> files = BuildFiles(withSketches: false);
        Assert.Equal(ExpectedWithoutSketches, Hash(files[0]));
        Assert.Equal(ExpectedWithoutSketches, Hash(files[1]));
    }

    [Fact]
    public void Build_IndexReusedByAnotherSeries_RowCarriesTheNewSeriesNames()
    {
        var registry = new SeriesRegistry();
        SeriesId first = registry.GetOrAdd("requests_total", new Label("route", "/old"));
        var writer = new ArrowWindowWriter(registry, 1, WindowSchema.Create("reuse"));
        var window = new WindowBuffer(4, withSketches: true, 0.01, 2048) { Start = 0, End = 10_000 };
        window.Add(first.Value, 1.5, 1);
        using (RecordBatch batch = writer.Build(window, 0, 1))
        {
            Assert.Equal("/old", RouteOf(batch));
        }

        Assert.NotNull(registry.Names[first.Value]);
        Assert.True(registry.Unlist(first));
        Assert.True(registry.Retire(first, reusableAt: 0) > 0);
        Assert.Null(registry.Names[first.Value]);
        SeriesId second = registry.GetOrAdd("latency_seconds", new Label("route", "/new"));
        Assert.Equal(first.Value, second.Value);
        window.Reset();
        window.Add(second.Value, 2.5, 2);
        using (RecordBatch batch = writer.Build(window, 0, 2))
        {
            Assert.Equal("latency_seconds", ((StringArray)batch.Column(WindowSchema.Columns.ToList().IndexOf("metric"))).GetString(0));
            Assert.Equal("/new", RouteOf(batch));
        }
    }

    [Fact]
    public void Build_SeriesOfOneMetric_RecordsKeepOnlyTheirLabels()
    {
        const string Metric = "http_server_request_duration_seconds";
        var registry = new SeriesRegistry();
        SeriesId get = registry.GetOrAdd(Metric, new Label("method", "GET"));
        SeriesId post = registry.GetOrAdd(Metric, new Label("method", "POST"));
        var writer = new ArrowWindowWriter(registry, 1, WindowSchema.Create("shared"));
        var window = new WindowBuffer(4, withSketches: false, 0.01, 2048) { Start = 0, End = 10_000 };
        window.Add(get.Value, 1.5, 1);
        window.Add(post.Value, 2.5, 2);
        using (RecordBatch batch = writer.Build(window, 0, 1))
        {
            var metrics = (StringArray)batch.Column(WindowSchema.Columns.ToList().IndexOf("metric"));
            Assert.Equal(Metric, metrics.GetString(0));
            Assert.Equal(Metric, metrics.GetString(1));
        }

        // Each series keeps its labels (a 4-byte length and the bytes of each string) after a 4-byte
        // index, not its metric's 36 bytes again.
        byte[] metricUtf8 = System.Text.Encoding.UTF8.GetBytes(Metric);
        byte[] getNames = registry.Names[get.Value]!;
        byte[] postNames = registry.Names[post.Value]!;
        Assert.Equal(4 + (4 + 6) + (4 + 3), getNames.Length);
        Assert.Equal(4 + (4 + 6) + (4 + 4), postNames.Length);
        Assert.Equal(-1, getNames.AsSpan().IndexOf(metricUtf8));
        Assert.Equal(-1, postNames.AsSpan().IndexOf(metricUtf8));
    }

    [Fact]
    public void Build_SeriesOfOneMetric_ShareOneMetricRecord()
    {
        var registry = new SeriesRegistry();
        SeriesId a = registry.GetOrAdd("requests_total", new Label("route", "/a"));
        SeriesId b = registry.GetOrAdd("requests_total", new Label("route", "/b"));
        SeriesId other = registry.GetOrAdd("latency_seconds", new Label("route", "/a"));
        var writer = new ArrowWindowWriter(registry, 1, WindowSchema.Create("shared"));
        var window = new WindowBuffer(4, withSketches: false, 0.01, 2048) { Start = 0, End = 10_000 };
        window.Add(a.Value, 1, 1);
        window.Add(b.Value, 2, 1);
        window.Add(other.Value, 3, 1);
        writer.Build(window, 0, 1).Dispose();

        int metric = SeriesUtf8.MetricIndex(registry.Names[a.Value]!);
        Assert.Equal(metric, SeriesUtf8.MetricIndex(registry.Names[b.Value]!));
        int otherMetric = SeriesUtf8.MetricIndex(registry.Names[other.Value]!);
        Assert.NotEqual(metric, otherMetric);
        byte[] record = registry.MetricNames[metric]!;
        Assert.Equal(14, BitConverter.ToInt32(record, 0));
        Assert.Equal("requests_total", System.Text.Encoding.UTF8.GetString(record, 4, 14));
        Assert.Equal(2, registry.MetricNames.Count(r => r is not null));

        // A later window, and another writer (another shard's), find the same record rather than make one.
        var second = new ArrowWindowWriter(registry, 1, WindowSchema.Create("shared"));
        SeriesId c = registry.GetOrAdd("requests_total", new Label("route", "/c"));
        window.Reset();
        window.Add(c.Value, 4, 2);
        second.Build(window, 0, 2).Dispose();
        Assert.Equal(metric, SeriesUtf8.MetricIndex(registry.Names[c.Value]!));
        Assert.Equal(2, registry.MetricNames.Count(r => r is not null));
    }

    [Fact]
    public void Build_MetricsFirstSeenInTheWindow_EachRowCarriesItsMetric()
    {
        // More metrics than the registry's first array of metric records holds, each first emitted in
        // this window: rows past the writer's snapshot find their metric's record all the same.
        var registry = new SeriesRegistry();
        var writer = new ArrowWindowWriter(registry, 1, WindowSchema.Create("many"));
        var window = new WindowBuffer(64, withSketches: false, 0.01, 2048) { Start = 0, End = 10_000 };
        for (int i = 0; i < 40; i++)
        {
            SeriesId id = registry.GetOrAdd("metric_" + i, new Label("k", "v" + i));
            window.Add(id.Value, i, 1);
        }

        using RecordBatch batch = writer.Build(window, 0, 1);
        var metrics = (StringArray)batch.Column(WindowSchema.Columns.ToList().IndexOf("metric"));
        for (int r = 0; r < 40; r++)
        {
            Assert.Equal("metric_" + r, metrics.GetString(r));
        }

        Assert.Equal(40, registry.MetricNames.Count(r => r is not null));
    }

    private static string RouteOf(RecordBatch batch)
    {
        var labels = (MapArray)batch.Column(WindowSchema.Columns.ToList().IndexOf("labels"));
        var entries = (StructArray)labels.KeyValues;
        return ((StringArray)entries.Fields[1]).GetString(labels.ValueOffsets[0]);
    }

    private static string Hash(byte[] file) => Convert.ToHexString(SHA256.HashData(file));

    /// <summary>
    /// The same window of shard 1 of 2 built twice by one writer, each into its own IPC file, with a
    /// different window built between them: the second build reuses pooled columns that hold other
    /// bytes, so bytes left past a column's end would change its file.
    /// </summary>
    private static List<byte[]> BuildFiles(bool withSketches)
    {
        const int Shards = 2;
        const int Shard = 1;
        var registry = new SeriesRegistry();
        var window = new WindowBuffer(8, withSketches, 0.01, 2048) { Start = 1_700_000_000_000, End = 1_700_000_010_000 };
        var other = new WindowBuffer(8, withSketches, 0.01, 2048) { Start = 1_700_000_010_000, End = 1_700_000_020_000 };
        var random = new Random(7);
        var otherRandom = new Random(11);
        int series = 0;
        for (int i = 0; series < 700; i++)
        {
            SeriesId id = registry.GetOrAdd(MetricName(i), Labels(i));
            if (id.Value % Shards != Shard)
            {
                continue;
            }

            series++;
            int slot = id.Value / Shards;
            if (slot >= window.Capacity)
            {
                window.Grow(slot + 1);
            }

            foreach (double value in Values(i, random))
            {
                window.Add(slot, value, 1_700_000_000_000 + i);
            }

            if (i % 3 == 0)
            {
                if (slot >= other.Capacity)
                {
                    other.Grow(slot + 1);
                }

                for (int k = 0; k < 50; k++)
                {
                    other.Add(slot, 1e-6 * Math.Exp(otherRandom.NextDouble() * 25), 1_700_000_010_000 + k);
                }
            }
        }

        Schema schema = WindowSchema.Create("golden");
        var writer = new ArrowWindowWriter(registry, Shards, schema);
        var files = new List<byte[]>();
        for (int build = 0; build < 2; build++)
        {
            using RecordBatch batch = writer.Build(window, Shard, sequence: 5);
            Assert.Equal(series, batch.Length);
            using var stream = new MemoryStream();
            using (var file = new ArrowFileWriter(stream, schema, leaveOpen: true))
            {
                file.WriteRecordBatch(batch);
                file.WriteEnd();
            }

            files.Add(stream.ToArray());
            if (build == 0)
            {
                using RecordBatch between = writer.Build(other, Shard, sequence: 6);
                Assert.Equal(other.TouchedCount, between.Length);
            }
        }

        return files;
    }

    /// <summary>Metric names of every copy path's length: under 4, 4–7, 8–16, 17–32, 33–64 and over 64 bytes.</summary>
    private static string MetricName(int i) => (i % 7) switch
    {
        0 => "m",
        1 => "req_s",
        2 => "http_request_seconds",
        3 => "service_http_server_request_duration_sec",
        4 => "a_very_long_metric_name_that_is_longer_than_sixty_four_bytes_in_utf8_total",
        5 => "latency_us",
        _ => "db_q",
    };

    /// <summary>Zero to five labels, values of every length, some repeated, one not ASCII.</summary>
    private static Label[] Labels(int i)
    {
        int count = i % 6;
        var labels = new Label[count + 1];
        labels[0] = new Label("id", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        for (int k = 1; k <= count; k++)
        {
            string value = ((i + k) % 5) switch
            {
                0 => "x",
                1 => "eu-west",
                2 => "GET /api/v1/orders/{id}/items",
                3 => new string('v', 20 + (i % 60)),
                _ => "zürich-été",
            };
            labels[k] = new Label("label_" + new string('k', k * 3), value);
        }

        return labels;
    }

    /// <summary>Latency-like values (sparse and dense stores), some counts over 127 in one bin, and some series with zeros or negative values (the general summary path).</summary>
    private static IEnumerable<double> Values(int i, Random random)
    {
        int points = 1 + (i % 40);
        for (int k = 0; k < points; k++)
        {
            yield return (i % 11) switch
            {
                0 => 0.25,
                1 => -0.01 * (1 + random.NextDouble()),
                2 => k % 3 == 0 ? 0 : 0.5 * random.NextDouble(),
                3 => 0.001 * Math.Exp(random.NextDouble() * 12),
                _ => 0.02 * Math.Exp(random.NextDouble() * 2),
            };
        }

        if (i % 11 == 0)
        {
            for (int k = 0; k < 300; k++)
            {
                yield return 0.25;
            }
        }
    }
}
