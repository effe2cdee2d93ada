using Monitoring.Stream.Model;
using Monitoring.Stream.Prometheus.Tests.Support;
using Snappier;

namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>The encoder on real window batches of a pipeline, read back with Google's protobuf reader.</summary>
public sealed class RemoteWriteEncoderTests
{
    private static readonly long s_start = PipelineDriver.WindowStartBeforeNow(20);

    private static (string, Label[], double, long) Point(string metric, Label[] labels, double value, int window, int offsetMs = 0) =>
        (metric, labels, value, s_start + (window * PipelineDriver.WindowMs) + offsetMs);

    [Fact]
    public async Task Encode_LabelsOfEverySeries_AreSortedUniqueWithTheEngineInstance()
    {
        var sink = new EncodingSink();
        Label[] labels = [new("Zone", "eu"), new("_shard", "3"), new("instance", "node-1"), new("quantile", "custom"), new("route", "/a")];

        await PipelineDriver.RunPointsAsync(sink, [Point("req_seconds", labels, 1.5, 0)]);

        List<DecodedSample> samples = sink.Samples;
        Assert.Equal(11, samples.Count);
        foreach (DecodedSample sample in samples)
        {
            string[] names = [.. sample.Labels.Select(l => l.Key)];
            Assert.Equal(names.Order(StringComparer.Ordinal), names);
            Assert.Equal(names.Length, names.Distinct().Count());
            Dictionary<string, string> map = sample.Labels.ToDictionary(l => l.Key, l => l.Value);
            Assert.Equal(PipelineDriver.EngineInstance, map["instance"]);
            Assert.Equal("node-1", map["exported_instance"]);
            Assert.Equal("custom", map["exported_quantile"]);
            Assert.Equal("eu", map["Zone"]);
            Assert.Equal("3", map["_shard"]);
            Assert.Equal(s_start + PipelineDriver.WindowMs, sample.TimestampMs);
        }

        Assert.Equal(["0.5", "0.9", "0.95", "0.99"], samples.Where(s => s.Name == "req_seconds").Select(s => s.Labels.First(l => l.Key == "quantile").Value));
    }

    [Theory]
    [InlineData("jobs_processed_total", "jobs_processed")]
    [InlineData("http_server_request_duration_seconds", "http_server_request_duration_seconds")]
    [InlineData("queue_bytes", "queue_bytes")]
    [InlineData("_total", "_total")]
    public async Task Encode_MetricName_GivesTheDocumentedFamily(string metric, string family)
    {
        var sink = new EncodingSink();

        await PipelineDriver.RunPointsAsync(sink, [Point(metric, [new("a", "b")], 2, 0)]);

        string[] expected = [family + "_count", family + "_sum", family, family, family, family, family + "_min", family + "_max", family + "_mean", family + "_stddev", family + "_last"];
        Assert.Equal(expected.Order(StringComparer.Ordinal), sink.Samples.Select(s => s.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Encode_CountAndSum_AreCumulativeAcrossWindowsAndGaugesPerWindow()
    {
        var sink = new EncodingSink();
        Label[] labels = [new("route", "/x")];

        await PipelineDriver.RunPointsAsync(sink,
        [
            Point("lat_seconds", labels, 1, 0), Point("lat_seconds", labels, 3, 0, 5),
            Point("lat_seconds", labels, 10, 1), Point("lat_seconds", labels, 20, 1, 1), Point("lat_seconds", labels, 30, 1, 2),
            Point("lat_seconds", labels, -4, 3),
        ]);

        List<DecodedSample> samples = sink.Samples;
        double[] Values(string name) => [.. samples.Where(s => s.Name == name).OrderBy(s => s.TimestampMs).Select(s => s.Value)];
        Assert.Equal([2, 5, 6], Values("lat_seconds_count"));
        Assert.Equal([4, 64, 60], Values("lat_seconds_sum"));
        Assert.Equal([1, 10, -4], Values("lat_seconds_min"));
        Assert.Equal([3, 30, -4], Values("lat_seconds_max"));
        Assert.Equal([2, 20, -4], Values("lat_seconds_mean"));
        Assert.Equal([3, 30, -4], Values("lat_seconds_last"));
        Assert.Equal([1, Math.Sqrt(200.0 / 3), 0], Values("lat_seconds_stddev"));
        long[] ends = [.. samples.Where(s => s.Name == "lat_seconds_count").Select(s => s.TimestampMs).Order()];
        Assert.Equal([s_start + 10_000, s_start + 20_000, s_start + 40_000], ends);
    }

    [Fact]
    public async Task Encode_SketchesOff_SendsNoQuantileSeries()
    {
        var sink = new EncodingSink();

        await PipelineDriver.RunPointsAsync(sink, [Point("lat_seconds", [new("a", "b")], 1, 0)], sketches: false);

        Assert.Equal(7, sink.Samples.Count);
        Assert.DoesNotContain(sink.Samples, s => s.Labels.Any(l => l.Key == "quantile"));
    }

    [Fact]
    public async Task Encode_MaxRequestBytes_SplitsIntoRequestsWithinTheBoundAndOneLanePerSeries()
    {
        var sink = new EncodingSink(lanes: 3, maxRequestBytes: 4096);
        var points = new List<(string, Label[], double, long)>();
        for (int w = 0; w < 2; w++)
        {
            for (int i = 0; i < 300; i++)
            {
                points.Add(Point("lat_seconds", [new("route", "/r" + i)], i, w, i % 100));
            }
        }

        await PipelineDriver.RunPointsAsync(sink, points);

        Assert.True(sink.Requests.Count > 10);
        Assert.All(sink.Requests, r => Assert.InRange(Snappy.GetUncompressedLength(r.Body), 1, 4096));
        Assert.Equal(2 * 300 * 11, sink.Requests.Sum(r => r.Samples));
        var lanesBySeries = sink.Requests.SelectMany(r => RemoteWriteRequestReader.Decode(r.Body).Select(s => (s.SeriesKey, r.Lane)))
            .GroupBy(x => x.SeriesKey).ToList();
        Assert.Equal(300 * 11, lanesBySeries.Count);
        Assert.All(lanesBySeries, g => Assert.Single(g.Select(x => x.Lane).Distinct()));
        Assert.Equal(3, sink.Requests.Select(r => r.Lane).Distinct().Count());
        Assert.Equal(Enumerable.Range(0, sink.Requests.Count).Select(i => (long)i), sink.Requests.Select(r => r.Sequence));
    }

    [Fact]
    public async Task Encode_SeriesIdleLongerThanTheTimeout_RestartsItsCountersFromZero()
    {
        var sink = new EncodingSink(idle: TimeSpan.FromSeconds(30));
        Label[] a = [new("s", "a")], b = [new("s", "b")];
        var points = new List<(string, Label[], double, long)> { Point("m", a, 1, 0), Point("m", a, 1, 0, 1) };
        for (int w = 0; w < 8; w++)
        {
            points.Add(Point("m", b, 1, w));
        }

        points.Add(Point("m", a, 1, 8, 1));

        await PipelineDriver.RunPointsAsync(sink, points);

        // Series a: 2 points at the first window end; gone 80 s (> 30 s): forgotten, and back with 1 point, a counter reset.
        Assert.Equal([2, 1], sink.Samples.Where(s => s.Name == "m_count" && s.SeriesKey.Contains("s=\"a\"", StringComparison.Ordinal)).OrderBy(s => s.TimestampMs).Select(s => s.Value));
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], sink.Samples.Where(s => s.Name == "m_count" && s.SeriesKey.Contains("s=\"b\"", StringComparison.Ordinal)).OrderBy(s => s.TimestampMs).Select(s => s.Value));
        Assert.Equal(1, sink.Encoder.SeriesForgotten);
    }

    [Fact]
    public async Task Encode_MoreSeriesThanTracked_ForgetsTheLongestUnseenWithinTheBound()
    {
        var sink = new EncodingSink(maxTrackedSeries: 100);
        var points = new List<(string, Label[], double, long)>();
        for (int w = 0; w < 3; w++)
        {
            for (int i = 0; i < 60; i++)
            {
                points.Add(Point("m", [new("s", "w" + w + "-" + i)], 1, w, i));
            }
        }

        await PipelineDriver.RunPointsAsync(sink, points);

        Assert.InRange(sink.Encoder.TrackedSeries, 1, 100);
        Assert.Equal(180 - sink.Encoder.TrackedSeries, sink.Encoder.SeriesForgotten);
        Assert.Equal(180 * 11, sink.Samples.Count);
    }

    [Fact]
    public async Task Split_Request_GivesTwoHalvesOfWholeSeriesInOrder()
    {
        var sink = new EncodingSink(lanes: 1);
        var points = Enumerable.Range(0, 5).Select(i => Point("m", [new("s", "v" + i)], i, 0)).ToList();
        await PipelineDriver.RunPointsAsync(sink, points);
        EncodedRequest request = Assert.Single(sink.Requests);

        var halves = RemoteWriteEncoder.Split(request.Body);

        Assert.NotNull(halves);
        (byte[] first, int firstSamples, byte[] second, int secondSamples) = halves.Value;
        List<DecodedSample> a = RemoteWriteRequestReader.Decode(first), b = RemoteWriteRequestReader.Decode(second);
        Assert.Equal(firstSamples, a.Count);
        Assert.Equal(secondSamples, b.Count);
        Assert.Equal(55, firstSamples + secondSamples);
        Assert.Equal(RemoteWriteRequestReader.Decode(request.Body).Select(s => s.SeriesKey), a.Concat(b).Select(s => s.SeriesKey));
    }
}
