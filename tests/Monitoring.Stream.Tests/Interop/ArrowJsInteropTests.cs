using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Interop;

/// <summary>The local store's files, read by an independent implementation: apache-arrow for JavaScript.</summary>
public class ArrowJsInteropTests
{
    private const long T0 = 1_800_000_000_000;

    [Fact]
    public async Task StoreFile_ReadByArrowJs_SchemaAndValuesAsWritten()
    {
        using var dir = new TempDirectory();
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 20_000));
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path }, time);
        var expected = new Dictionary<(string Route, long Window), RunningMoments>();
        var sketches = new Dictionary<(string Route, long Window), DdSketch>();
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, TimeProvider = time, Instance = "interop-test", AllowedLateness = TimeSpan.FromMinutes(1) }, [store]))
        {
            pipeline.Start();
            using PointWriter writer = pipeline.CreateWriter("test");
            var random = new Random(3);
            foreach (string route in new[] { "/a", "/b\"quoted\"", "/ünïcode" })
            {
                for (int i = 0; i < 500; i++)
                {
                    long ts = T0 + (i * 37);
                    double v = Math.Round(random.NextDouble() * 1000, 3) - 100;
                    writer.Write("http_latency_ms", [new Label("route", route), new Label("method", "GET")], v, ts);
                    long window = ts - (ts % 10_000);
                    RunningMoments m = expected.GetValueOrDefault((route, window));
                    m.Add(v, ts);
                    expected[(route, window)] = m;
                    if (!sketches.TryGetValue((route, window), out DdSketch? s))
                    {
                        sketches[(route, window)] = s = new DdSketch();
                    }

                    s.Add(v);
                }
            }

            writer.Flush();
            await pipeline.StopAsync();
        }

        string file = Assert.Single(store.PublishedFiles());
        using JsonDocument json = JsonDocument.Parse(await NodeRunner.RunAsync("read-arrow-file.mjs", file));
        JsonElement root = json.RootElement;

        Assert.Equal(6, expected.Count); // three series, two windows each
        Assert.Equal(expected.Count, root.GetProperty("numRows").GetInt32());
        Assert.Equal("1", root.GetProperty("metadata").GetProperty("monitoring_stream.schema_version").GetString());
        Assert.Equal("interop-test", root.GetProperty("metadata").GetProperty("monitoring_stream.instance").GetString());
        string[] fields = [.. root.GetProperty("fields").EnumerateArray().Select(f => f.GetProperty("name").GetString()!)];
        Assert.Equal(Monitoring.Stream.Arrow.WindowSchema.Columns, fields);
        Assert.Equal("Timestamp<NANOSECOND, UTC>", root.GetProperty("fields")[0].GetProperty("type").GetString());

        foreach (JsonElement row in root.GetProperty("rows").EnumerateArray())
        {
            string route = row.GetProperty("labels").GetProperty("route").GetString()!;
            long window = row.GetProperty("window_start_ms").GetInt64();
            RunningMoments m = expected[(route, window)];
            Assert.Equal("http_latency_ms", row.GetProperty("metric").GetString());
            Assert.Equal("GET", row.GetProperty("labels").GetProperty("method").GetString());
            Assert.Equal(window + 10_000, row.GetProperty("window_end_ms").GetInt64());
            Assert.Equal(m.Count, row.GetProperty("count").GetInt64());
            Assert.Equal(m.Min, row.GetProperty("min").GetDouble());
            Assert.Equal(m.Max, row.GetProperty("max").GetDouble());
            Assert.Equal(m.Last, row.GetProperty("last").GetDouble());
            Assert.Equal(m.Sum, row.GetProperty("sum").GetDouble(), 1e-9);
            Assert.Equal(m.Mean, row.GetProperty("mean").GetDouble(), 1e-9);
            Assert.Equal(m.PopulationVariance, row.GetProperty("variance").GetDouble(), 1e-6);
            Assert.Equal(sketches[(route, window)].GetQuantile(0.99), row.GetProperty("p99").GetDouble());
            Assert.True(row.GetProperty("sketch_bytes").GetInt32() > 10);
        }
    }
}
