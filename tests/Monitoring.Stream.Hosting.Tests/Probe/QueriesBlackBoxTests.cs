using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// The statistics queries of docs/sdk.md ("Statistics queries") and docs/statistics.md held to a computation in the
/// test: several series and windows, a group-by label some series lack, spans that are empty, inverted, endless or
/// cross now, quantiles at and beyond [0, 1], filters that match nothing, and queries racing with writes.
/// </summary>
public class QueriesBlackBoxTests
{
    private const long T0 = EngineFixture.T0;
    private const long WindowMs = 10_000;
    private const double Alpha = 0.01;

    private sealed record Point(string Route, string Status, long Timestamp, double Value);

    private static readonly (string Route, string Status)[] s_series =
        [("/a", "200"), ("/a", "500"), ("/b", "200"), ("/b", string.Empty), (string.Empty, "500"), (string.Empty, string.Empty)];

    private static async Task<(EngineFixture Engine, List<Point> Points)> WriteAsync()
    {
        var engine = new EngineFixture(nowUnixMs: T0 + (6 * WindowMs));
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_q_seconds", ["route", "status"]);
        var random = new Random(7);
        var points = new List<Point>();
        for (long ts = T0; ts < T0 + (6 * WindowMs); ts += 37)
        {
            (string route, string status) = s_series[random.Next(s_series.Length)];
            double value = random.Next(4) switch
            {
                0 => 1e9 + random.NextDouble(),          // large offset, small spread
                1 => -Math.Exp(random.NextDouble() * 20),
                2 => 0,
                _ => random.NextDouble() * 1e-3,
            };
            Assert.Equal(RejectReason.None, histogram.RecordAt(ts, value, route, status));
            points.Add(new Point(route, status, ts, value));
        }

        await engine.StopAsync();
        return (engine, points);
    }

    private static IEnumerable<Point> InSpan(IEnumerable<Point> points, long from, long to) =>
        points.Where(p =>
        {
            long start = p.Timestamp - (p.Timestamp % WindowMs);
            return start + WindowMs > from && start < to;
        });

    private static void AssertExact(IEnumerable<Point> expected, MetricStatistics? actual, string what)
    {
        var exact = new ExactStatistics(expected.Select(p => p.Value));
        Assert.True(actual is not null, what + ": no answer");
        Assert.Equal(exact.Count, actual.Count);
        Assert.Equal(exact.Min, actual.Min);
        Assert.Equal(exact.Max, actual.Max);
        Assert.Equal(exact.Sum, actual.Sum, (Math.Abs(exact.Sum) * 1e-12) + 1e-9);
        Assert.Equal(exact.Mean, actual.Mean, (Math.Abs(exact.Mean) * 1e-12) + 1e-9);
        Assert.Equal(exact.PopulationStdDev, actual.PopulationStdDev, (exact.PopulationStdDev * 1e-9) + 1e-9);
        Assert.Equal(exact.SampleStdDev, actual.SampleStdDev, (exact.SampleStdDev * 1e-9) + 1e-9);
        Assert.Equal(exact.PopulationStdDev * exact.PopulationStdDev, actual.PopulationVariance, (exact.M2 / exact.Count * 1e-9) + 1e-9);
        Assert.Equal(exact.Min, actual.Quantile(0));   // statistics.md: q = 0 and q = 1 are the exact extremes
        Assert.Equal(exact.Max, actual.Quantile(1));
        foreach (double q in (double[])[0.01, 0.25, 0.5, 0.75, 0.9, 0.99])
        {
            double e = exact.Quantile(q);
            double got = actual.Quantile(q);
            Assert.True(Math.Abs(got - e) <= (Alpha * (1 + 1e-9) * Math.Abs(e)) + 1e-300, $"{what} q={q}: exact {e}, got {got}");
        }
    }

    [Fact]
    public async Task Queries_SixSeriesSixWindowsUnalignedSpans_ExactMomentsAndQuantilesWithinAlpha()
    {
        (EngineFixture engine, List<Point> points) = await WriteAsync();
        await using EngineFixture owned = engine;
        const string Metric = "probe_q_seconds";
        (long From, long To)[] spans = [(T0, T0 + (6 * WindowMs)), (T0 + 12_345, T0 + 31_000), (T0 + 19_999, T0 + 20_001), (T0 - 5_000, T0 + 1)];
        foreach ((long from, long to) in spans)
        {
            var f = DateTimeOffset.FromUnixTimeMilliseconds(from);
            var t = DateTimeOffset.FromUnixTimeMilliseconds(to);
            List<Point> inSpan = [.. InSpan(points, from, to)];

            // GetStatistics: exactly one label set (an empty value is the label absent).
            foreach ((string route, string status) in s_series)
            {
                var labels = new List<Label>();
                if (route.Length > 0)
                {
                    labels.Add(new Label("route", route));
                }

                if (status.Length > 0)
                {
                    labels.Add(new Label("status", status));
                }

                AssertExact(inSpan.Where(p => p.Route == route && p.Status == status),
                    engine.Queries.GetStatistics(Metric, LabelSet.Create([.. labels]), f, t), $"exact {route},{status} [{from - T0},{to - T0})");
            }

            // GetMatching: subset match, merged.
            AssertExact(inSpan, engine.Queries.GetMatching(Metric, LabelSet.Empty, f, t), "all");
            AssertExact(inSpan.Where(p => p.Status == "500"), engine.Queries.GetMatching(Metric, LabelSet.Create(new Label("status", "500")), f, t), "status=500");
            MetricStatistics? b = engine.Queries.GetMatching(Metric, LabelSet.Create(new Label("route", "/b")), f, t);
            AssertExact(inSpan.Where(p => p.Route == "/b"), b, "route=/b");
            Assert.Equal(2, b!.Series);

            // GetGrouped by a label two series lack: those form the group without it.
            IReadOnlyList<GroupedStatistics> groups = engine.Queries.GetGrouped(Metric, LabelSet.Empty, ["status"], f, t);
            Assert.Equal(3, groups.Count);
            foreach (string status in (string[])["200", "500", ""])
            {
                LabelSet key = status.Length == 0 ? LabelSet.Empty : LabelSet.Create(new Label("status", status));
                GroupedStatistics g = Assert.Single(groups, g => g.Group.Equals(key));
                AssertExact(inSpan.Where(p => p.Status == status), g.Statistics, $"group status={status}");
            }

            // Grouped by two labels with a filter.
            IReadOnlyList<GroupedStatistics> byBoth = engine.Queries.GetGrouped(Metric, LabelSet.Create(new Label("route", "/a")), ["status", "route"], f, t);
            Assert.Equal(2, byBoth.Count);
            Assert.Equal(inSpan.Count(p => p.Route == "/a"), byBoth.Sum(g => g.Statistics.Count));
        }
    }

    [Fact]
    public async Task Queries_FilterOrMetricMatchingNothing_NullOrEmptyNeverThrows()
    {
        EngineFixture engine = (await WriteAsync()).Engine;
        await using EngineFixture owned = engine;
        var f = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        var t = DateTimeOffset.FromUnixTimeMilliseconds(T0 + (6 * WindowMs));

        Assert.Null(engine.Queries.GetMatching("probe_q_seconds", LabelSet.Create(new Label("status", "404")), f, t));
        Assert.Null(engine.Queries.GetMatching("probe_q_seconds", LabelSet.Create(new Label("route", "200")), f, t));   // a value of another label
        Assert.Null(engine.Queries.GetMatching("probe_q_seconds", LabelSet.Create(new Label("nolabel", "x")), f, t));
        Assert.Null(engine.Queries.GetMatching("no_such_metric", LabelSet.Empty, f, t));
        Assert.Null(engine.Queries.GetStatistics("probe_q_seconds", LabelSet.Create(new Label("route", "/a")), f, t));   // /a has a status on every point
        Assert.Empty(engine.Queries.GetGrouped("probe_q_seconds", LabelSet.Create(new Label("status", "404")), ["route"], f, t));
        Assert.Empty(engine.Queries.GetGrouped("no_such_metric", LabelSet.Empty, ["route"], f, t));

        // Grouped by a label no series has: one group, with no key, of everything.
        GroupedStatistics only = Assert.Single(engine.Queries.GetGrouped("probe_q_seconds", LabelSet.Empty, ["nolabel"], f, t));
        Assert.Equal(LabelSet.Empty, only.Group);
        Assert.Equal(engine.Queries.GetMatching("probe_q_seconds", LabelSet.Empty, f, t)!.Count, only.Statistics.Count);
    }

    [Fact]
    public async Task GetGrouped_SpanWithoutWindowsOfSomeOrAllSeries_OnlyGroupsWithDataEachWithStatistics()
    {
        // GroupedStatistics.Statistics is not nullable, and "one answer per combination": a group none of whose series
        // has a window in the span has no answer, so it must not be listed (it was, with null statistics).
        await using var engine = new EngineFixture(nowUnixMs: T0 + (6 * WindowMs));
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_sparse_seconds", ["route"]);
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0 + 1, 1, "/early"));
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0 + (5 * WindowMs) + 1, 2, "/late"));
        await engine.StopAsync();

        IReadOnlyList<GroupedStatistics> none = engine.Queries.GetGrouped("probe_sparse_seconds", LabelSet.Empty, ["route"],
            DateTimeOffset.FromUnixTimeMilliseconds(T0 + (2 * WindowMs)), DateTimeOffset.FromUnixTimeMilliseconds(T0 + (4 * WindowMs)));
        Assert.Empty(none);
        IReadOnlyList<GroupedStatistics> lateOnly = engine.Queries.GetGrouped("probe_sparse_seconds", LabelSet.Empty, ["route"],
            DateTimeOffset.FromUnixTimeMilliseconds(T0 + (3 * WindowMs)), DateTimeOffset.FromUnixTimeMilliseconds(T0 + (6 * WindowMs)));
        GroupedStatistics late = Assert.Single(lateOnly);
        Assert.Equal(LabelSet.Create(new Label("route", "/late")), late.Group);
        Assert.NotNull(late.Statistics);
        Assert.Equal(2, late.Statistics.Sum);
        Assert.Null(engine.Queries.GetMatching("probe_sparse_seconds", LabelSet.Empty,
            DateTimeOffset.FromUnixTimeMilliseconds(T0 + (2 * WindowMs)), DateTimeOffset.FromUnixTimeMilliseconds(T0 + (4 * WindowMs))));
    }

    [Fact]
    public async Task Queries_EmptyInvertedEndlessAndFutureSpans_AnswerWithoutThrowing()
    {
        (EngineFixture engine, List<Point> points) = await WriteAsync();
        await using EngineFixture owned = engine;
        const string Metric = "probe_q_seconds";
        DateTimeOffset now = engine.Time.GetUtcNow();

        // A span that is not positive is the caller's error: a clear ArgumentOutOfRangeException naming it (sdk.md now says so).
        foreach (TimeSpan bad in (TimeSpan[])[TimeSpan.FromMinutes(-5), TimeSpan.Zero, TimeSpan.MinValue])
        {
            Assert.Equal("span", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Queries.GetMatching(Metric, LabelSet.Empty, bad)).ParamName);
            Assert.Equal("span", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Queries.GetStatistics(Metric, LabelSet.Empty, bad)).ParamName);
            Assert.Equal("span", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Queries.GetGrouped(Metric, LabelSet.Empty, ["status"], bad)).ParamName);
        }

        // An explicit span that is empty or inverted is refused the same way, naming 'to'.
        Assert.Equal("to", Assert.Throws<ArgumentException>(() => engine.Queries.GetMatching(Metric, LabelSet.Empty, now, now.AddMinutes(-5))).ParamName);
        Assert.Equal("to", Assert.Throws<ArgumentException>(() => engine.Queries.GetStatistics(Metric, LabelSet.Empty, now, now)).ParamName);
        Assert.Equal("to", Assert.Throws<ArgumentException>(() => engine.Queries.GetGrouped(Metric, LabelSet.Empty, ["status"], now, now.AddTicks(-1))).ParamName);

        // A span reaching back for ever is every window kept; one crossing now into the future is too.
        AssertExact(points, engine.Queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.MaxValue), "TimeSpan.MaxValue");
        AssertExact(points, engine.Queries.GetMatching(Metric, LabelSet.Empty, DateTimeOffset.MinValue, DateTimeOffset.MaxValue), "Min..Max");
        AssertExact(points, engine.Queries.GetMatching(Metric, LabelSet.Empty, now.AddDays(-400), now.AddDays(400)), "crossing now");

        // The shortest span, one millisecond inside a window, is that whole window and no neighbour.
        var inside = DateTimeOffset.FromUnixTimeMilliseconds(T0 + (2 * WindowMs) + 5_000);
        AssertExact(InSpan(points, T0 + (2 * WindowMs), T0 + (2 * WindowMs) + 1),
            engine.Queries.GetMatching(Metric, LabelSet.Empty, inside, inside.AddMilliseconds(1)), "one millisecond");
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(-0.1)]
    [InlineData(1.1)]
    [InlineData(double.NegativeInfinity)]
    [InlineData(double.PositiveInfinity)]
    public async Task Quantile_OutsideZeroToOne_ArgumentOutOfRangeNamingQ(double q)
    {
        // The XML doc: "the value at quantile q in [0, 1]". Outside that range, NaN included, a hostile caller gets an
        // ArgumentOutOfRangeException naming q, never a plausible value.
        EngineFixture engine = (await WriteAsync()).Engine;
        await using EngineFixture owned = engine;
        MetricStatistics s = engine.Queries.GetMatching("probe_q_seconds", LabelSet.Empty, TimeSpan.FromHours(1))!;

        Assert.Equal("q", Assert.Throws<ArgumentOutOfRangeException>(() => s.Quantile(q)).ParamName);
    }

    [Fact]
    public async Task Queries_RacingWithWritesAndWindowEmission_EveryAnswerConsistentAndCountsNeverShrink()
    {
        // The index is a sink written on the engine's sink thread while queries read it from others.
        await using var engine = new EngineFixture(nowUnixMs: T0 + (40 * WindowMs));
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_race_seconds", ["route"]);
        using var done = new CancellationTokenSource();
        long written = 0;
        Task writer = Task.Factory.StartNew(() =>
        {
            for (long ts = T0; ts < T0 + (40 * WindowMs); ts += 2)
            {
                Assert.Equal(RejectReason.None, histogram.RecordAt(ts, ts % 1000, ts % 3 == 0 ? "/a" : "/b"));
                written++;
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        string? inconsistency = null;
        int answers = 0;
        Task[] readers = [.. Enumerable.Range(0, 2).Select(r => Task.Factory.StartNew(() =>
        {
            long lastCount = 0;
            while (!done.IsCancellationRequested)
            {
                MetricStatistics? s = r == 0
                    ? engine.Queries.GetMatching("probe_race_seconds", LabelSet.Empty, TimeSpan.FromHours(1))
                    : engine.Queries.GetGrouped("probe_race_seconds", LabelSet.Empty, ["route"], TimeSpan.FromHours(1)).Select(g => g.Statistics).FirstOrDefault(g => g.Count > 0);
                if (s is null)
                {
                    continue;
                }

                Interlocked.Increment(ref answers);
                if (r == 0 && s.Count < lastCount)
                {
                    inconsistency ??= $"count went from {lastCount} to {s.Count}";
                }

                lastCount = r == 0 ? s.Count : lastCount;
                if (s.Min < 0 || s.Max > 999 || s.Mean < s.Min || s.Mean > s.Max || s.Windows < 1 || s.Median < s.Min || s.Median > s.Max)
                {
                    inconsistency ??= $"answer out of the data's range: n={s.Count} min={s.Min} max={s.Max} mean={s.Mean} median={s.Median} windows={s.Windows}";
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];

        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        await engine.StopAsync();
        await Eventually.TrueAsync(() => Volatile.Read(ref answers) > 10, "readers answered after the stop");
        await done.CancelAsync();
        await Task.WhenAll(readers).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Null(inconsistency);
        MetricStatistics final = engine.Queries.GetMatching("probe_race_seconds", LabelSet.Empty, TimeSpan.FromHours(1))!;
        Assert.Equal(written, final.Count);
        Assert.Equal(80, final.Windows);   // 40 windows of 2 series
    }
}
