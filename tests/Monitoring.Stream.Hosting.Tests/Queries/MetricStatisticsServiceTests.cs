using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Queries;

public class MetricStatisticsServiceTests
{
    private const long T0 = EngineFixture.T0;
    private const long WindowMs = 10_000;
    private const long DurationMs = 10 * 60_000;
    private const double Alpha = 0.01;
    private static readonly string[] s_routes = ["/a", "/b", "/c"];
    private static readonly string[] s_methods = ["GET", "POST"];

    private sealed record Point(string Route, string Method, long Timestamp, double Value);

    /// <summary>
    /// Ten minutes of adversarial values (near 1e9 with small spread on /a, heavy tail on /b, zeros and
    /// negatives on /c) for six series, written through a histogram; the index keeps two minutes, so the
    /// rest is read back from the Arrow store's files.
    /// </summary>
    private static async Task<(EngineFixture Engine, List<Point> Points)> RunAsync(string storeDirectory)
    {
        var engine = new EngineFixture(nowUnixMs: T0 + DurationMs + 1_000, indexRetention: TimeSpan.FromMinutes(2), storeDirectory: storeDirectory);
        MetricHistogram histogram = engine.Collector.CreateHistogram("latency", ["route", "method"]);
        var random = new Random(42);
        var points = new List<Point>();
        for (long ts = T0; ts < T0 + DurationMs; ts += 50)
        {
            string route = s_routes[random.Next(3)];
            string method = s_methods[random.Next(2)];
            double value = route switch
            {
                "/a" => 1e9 + random.NextDouble(),
                "/b" => Math.Exp(random.NextDouble() * 12),
                _ => random.Next(5) == 0 ? 0 : (random.NextDouble() - 0.6) * 100,
            };
            Assert.Equal(RejectReason.None, histogram.RecordAt(ts, value, route, method));
            points.Add(new Point(route, method, ts, value));
        }

        await engine.StopAsync();
        return (engine, points);
    }

    /// <summary>The points of the windows that overlap [from, to), as the service defines a span.</summary>
    private static IEnumerable<Point> InSpan(List<Point> points, long from, long to) =>
        points.Where(p =>
        {
            long start = p.Timestamp - (p.Timestamp % WindowMs);
            return start + WindowMs > from && start < to;
        });

    private static void AssertMatches(IEnumerable<Point> expectedPoints, MetricStatistics? actual)
    {
        var exact = new ExactStatistics(expectedPoints.Select(p => p.Value));
        Assert.NotNull(actual);
        Assert.Equal(exact.Count, actual.Count);
        Assert.Equal(exact.Min, actual.Min);
        Assert.Equal(exact.Max, actual.Max);
        Assert.Equal(exact.Sum, actual.Sum, Math.Abs(exact.Sum) * 1e-12 + 1e-9);
        Assert.Equal(exact.Mean, actual.Mean, Math.Abs(exact.Mean) * 1e-12 + 1e-9);
        Assert.Equal(exact.PopulationStdDev, actual.PopulationStdDev, exact.PopulationStdDev * 1e-6 + 1e-9);
        Assert.Equal(exact.SampleStdDev, actual.SampleStdDev, exact.SampleStdDev * 1e-6 + 1e-9);
        foreach (double q in (double[])[0.5, 0.9, 0.95, 0.99, 0.25, 0.999])
        {
            double expected = exact.Quantile(q);
            double got = q switch { 0.5 => actual.Median, 0.9 => actual.P90, 0.95 => actual.P95, 0.99 => actual.P99, _ => actual.Quantile(q) };
            Assert.True(Math.Abs(got - expected) <= Alpha * Math.Abs(expected) + 1e-12, $"q={q}: expected {expected} within {Alpha:P0}, got {got}");
        }
    }

    [Fact]
    public async Task GetStatistics_ExactLabelSetAcrossMemoryAndFiles_EqualsExactComputation()
    {
        using var dir = new TempDirectory();
        (EngineFixture engine, List<Point> points) = await RunAsync(dir.Path);
        await using (engine)
        {
            long boundary = engine.Index.MemoryBoundaryUnixMs;
            Assert.InRange(boundary, T0 + 60_000, T0 + DurationMs - 60_000);
            Assert.NotEmpty(engine.Store!.PublishedFiles());

            foreach (string route in s_routes)
            {
                MetricStatistics? stats = engine.Queries.GetStatistics("latency",
                    LabelSet.Create(new Label("route", route), new Label("method", "GET")), TimeSpan.FromMinutes(11));

                AssertMatches(points.Where(p => p.Route == route && p.Method == "GET"), stats);
                Assert.Equal(1, stats!.Series);
                Assert.Equal(DurationMs / WindowMs, stats.Windows);
            }
        }
    }

    [Fact]
    public async Task GetMatching_SubsetFilter_MergesEveryMatchingSeries()
    {
        using var dir = new TempDirectory();
        (EngineFixture engine, List<Point> points) = await RunAsync(dir.Path);
        await using (engine)
        {
            long from = T0 + 95_000, to = T0 + DurationMs - 30_000;
            MetricStatistics? post = engine.Queries.GetMatching("latency", LabelSet.Create(new Label("method", "POST")),
                DateTimeOffset.FromUnixTimeMilliseconds(from), DateTimeOffset.FromUnixTimeMilliseconds(to));
            MetricStatistics? all = engine.Queries.GetMatching("latency", LabelSet.Empty,
                DateTimeOffset.FromUnixTimeMilliseconds(from), DateTimeOffset.FromUnixTimeMilliseconds(to));

            AssertMatches(InSpan(points, from, to).Where(p => p.Method == "POST"), post);
            Assert.Equal(3, post!.Series);
            Assert.Equal(T0 + 90_000, post.FromUnixMs);
            AssertMatches(InSpan(points, from, to), all);
            Assert.Equal(6, all!.Series);
            Assert.Null(engine.Queries.GetMatching("latency", LabelSet.Create(new Label("method", "PUT")), TimeSpan.FromHours(1)));
        }
    }

    [Fact]
    public async Task GetGrouped_ByRoute_EachGroupEqualsExactComputation()
    {
        using var dir = new TempDirectory();
        (EngineFixture engine, List<Point> points) = await RunAsync(dir.Path);
        await using (engine)
        {
            IReadOnlyList<GroupedStatistics> groups = engine.Queries.GetGrouped("latency", LabelSet.Empty, ["route"], TimeSpan.FromHours(1));

            Assert.Equal(s_routes, groups.Select(g => g.Group.GetValue("route")));
            foreach (GroupedStatistics group in groups)
            {
                Assert.Equal(1, group.Group.Count);
                AssertMatches(points.Where(p => p.Route == group.Group.GetValue("route")), group.Statistics);
                Assert.Equal(2, group.Statistics.Series);
            }
        }
    }

    [Fact]
    public async Task GetStatistics_SpanOnlyInMemoryOrOnlyInFiles_EachEqualsExactComputation()
    {
        using var dir = new TempDirectory();
        (EngineFixture engine, List<Point> points) = await RunAsync(dir.Path);
        await using (engine)
        {
            long boundary = engine.Index.MemoryBoundaryUnixMs;
            LabelSet labels = LabelSet.Create(new Label("route", "/b"), new Label("method", "POST"));
            IEnumerable<Point> series = points.Where(p => p.Route == "/b" && p.Method == "POST");

            MetricStatistics? memoryOnly = engine.Queries.GetStatistics("latency", labels, TimeSpan.FromMinutes(1));
            MetricStatistics? filesOnly = engine.Queries.GetStatistics("latency", labels,
                DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(boundary - WindowMs));

            long now = engine.Time.GetUtcNow().ToUnixTimeMilliseconds();
            AssertMatches(InSpan([.. series], now - 60_000, now), memoryOnly);
            AssertMatches(InSpan([.. series], T0, boundary - WindowMs), filesOnly);
        }
    }

    [Fact]
    public async Task GetStatistics_WithoutFiles_AnswersOnlyWhatMemoryHolds()
    {
        using var dir = new TempDirectory();
        (EngineFixture engine, List<Point> points) = await RunAsync(dir.Path);
        await using (engine)
        {
            var memoryOnly = new MetricStatisticsService(engine.Index, arrowStoreDirectory: null, engine.Time);
            long boundary = engine.Index.MemoryBoundaryUnixMs;

            MetricStatistics? stats = memoryOnly.GetMatching("latency", LabelSet.Empty, TimeSpan.FromHours(1));

            AssertMatches(points.Where(p => p.Timestamp >= boundary), stats);
        }
    }
}
