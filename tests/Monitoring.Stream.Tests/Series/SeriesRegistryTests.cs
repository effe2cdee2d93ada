using System.Collections.Concurrent;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Series;

public class SeriesRegistryTests
{
    private static Label[] LabelsFor(int i) =>
        [new("host", "host-" + (i % 97)), new("route", "/api/" + i), new("status", (200 + (i % 5)).ToString(System.Globalization.CultureInfo.InvariantCulture))];

    [Fact]
    public void GetOrAdd_SameSeriesAnyLabelOrder_SameId()
    {
        var registry = new SeriesRegistry();

        SeriesId a = registry.GetOrAdd("latency", new Label("a", "1"), new Label("b", "2"), new Label("c", "3"));
        SeriesId b = registry.GetOrAdd("latency", new Label("c", "3"), new Label("a", "1"), new Label("b", "2"));
        SeriesId c = registry.GetOrAdd("latency", LabelSet.Create(new Label("b", "2"), new Label("c", "3"), new Label("a", "1")));

        Assert.Equal(a, b);
        Assert.Equal(a, c);
        Assert.Equal(1, registry.Count);
    }

    [Fact]
    public void GetOrAdd_DifferentMetricOrLabels_DenseDistinctIds()
    {
        var registry = new SeriesRegistry();

        SeriesId a = registry.GetOrAdd("m1", new Label("a", "1"));
        SeriesId b = registry.GetOrAdd("m2", new Label("a", "1"));
        SeriesId c = registry.GetOrAdd("m1", new Label("a", "2"));
        SeriesId d = registry.GetOrAdd("m1");

        Assert.Equal([0, 1, 2, 3], new[] { a, b, c, d }.Select(id => id.Value));
        Assert.Equal("m1{a=\"2\"}", registry.GetDescriptor(c).ToString());
    }

    [Fact]
    public void GetOrAdd_EmptyValuedLabel_SameSeriesAsWithout()
    {
        var registry = new SeriesRegistry();

        SeriesId a = registry.GetOrAdd("m", new Label("a", "1"), new Label("b", ""));
        SeriesId b = registry.GetOrAdd("m", new Label("a", "1"));

        Assert.Equal(a, b);
    }

    [Theory]
    [InlineData("bad-metric", "ok", RejectReason.InvalidMetricName)]
    [InlineData("ok_metric", "bad-label", RejectReason.InvalidLabelName)]
    [InlineData("ok_metric", "__name__", RejectReason.InvalidLabelName)]
    public void TryGetOrAdd_InvalidNames_RefusedAndCounted(string metric, string labelName, RejectReason expected)
    {
        var registry = new SeriesRegistry();

        RejectReason reason = registry.TryGetOrAdd(metric, [new Label(labelName, "v")], out _);

        Assert.Equal(expected, reason);
        Assert.Equal(1, registry.GetRejectedCount(expected));
        Assert.Equal(0, registry.Count);
        var error = Assert.Throws<MetricValidationException>(() => registry.GetOrAdd(metric, new Label(labelName, "v")));
        Assert.Equal(expected, error.Reason);
        Assert.Contains(metric, error.Message);
    }

    [Fact]
    public void TryGetOrAdd_DuplicateNamesTooManyLabelsLongValue_Refused()
    {
        var registry = new SeriesRegistry(new SeriesRegistryOptions { MaxLabelsPerSeries = 2, MaxLabelValueLength = 5 });

        Assert.Equal(RejectReason.DuplicateLabelName, registry.TryGetOrAdd("m", [new("a", "1"), new("a", "2")], out _));
        Assert.Equal(RejectReason.TooManyLabels, registry.TryGetOrAdd("m", [new("a", "1"), new("b", "2"), new("c", "3")], out _));
        Assert.Equal(RejectReason.LabelValueTooLong, registry.TryGetOrAdd("m", [new("a", "123456")], out _));
        Assert.Equal(RejectReason.InvalidMetricName, registry.TryGetOrAdd(null!, [], out _));
        Assert.Equal(RejectReason.InvalidLabelName, registry.TryGetOrAdd("m", [new(null!, "x")], out _));
        Assert.Equal(0, registry.Count);
    }

    [Fact]
    public void TryGetOrAdd_BeyondMetricLimit_Refused()
    {
        var registry = new SeriesRegistry(new SeriesRegistryOptions { MaxMetrics = 2 });
        registry.GetOrAdd("m1");
        registry.GetOrAdd("m2");

        Assert.Equal(RejectReason.MetricLimitExceeded, registry.TryGetOrAdd("m3", [], out _));
        Assert.Equal(RejectReason.None, registry.TryGetOrAdd("m1", [new("a", "1")], out _));
        Assert.Equal(1, registry.GetRejectedCount(RejectReason.MetricLimitExceeded));
    }

    [Fact]
    public void GetOrAdd_BeyondCardinalityLimit_FoldsIntoOneOverflowSeries()
    {
        var registry = new SeriesRegistry(new SeriesRegistryOptions { MaxSeriesPerMetric = 10 });
        var ids = Enumerable.Range(0, 15).Select(i => registry.GetOrAdd("req", LabelsFor(i))).ToArray();

        SeriesDescriptor overflow = registry.GetDescriptor(ids[10]);
        Assert.True(overflow.IsOverflow);
        Assert.Equal("true", overflow.Labels.GetValue(SeriesRegistry.OverflowLabelName));
        Assert.Equal(10, ids.Take(10).Distinct().Count());
        Assert.All(ids.Skip(10), id => Assert.Equal(overflow.Id, id));
        Assert.Equal(5, registry.GetOverflowResolutions("req"));
        Assert.Equal(10, registry.GetSeriesCount("req"));
        // Series that existed before the limit keep their own ids.
        Assert.Equal(ids[3], registry.GetOrAdd("req", LabelsFor(3)));
        // Other metrics are not affected.
        Assert.False(registry.GetDescriptor(registry.GetOrAdd("other", LabelsFor(99))).IsOverflow);
    }

    [Fact]
    public void GetOrAdd_EightThreadsOverlappingSets_OneIdPerSeries()
    {
        const int Series = 5_000;
        var registry = new SeriesRegistry();
        var results = new SeriesId[8][];

        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            var random = new Random(t);
            int[] order = Enumerable.Range(0, Series).ToArray();
            random.Shuffle(order);
            var mine = new SeriesId[Series];
            foreach (int i in order)
            {
                Label[] labels = LabelsFor(i);
                random.Shuffle(labels);
                mine[i] = registry.GetOrAdd("http_request_duration_seconds", labels);
            }

            results[t] = mine;
        });

        Assert.Equal(Series, registry.Count);
        for (int t = 1; t < 8; t++)
        {
            Assert.Equal(results[0], results[t]);
        }

        Assert.Equal(Series, results[0].Distinct().Count());
        Assert.All(Enumerable.Range(0, Series), id => Assert.Equal(id, registry.GetDescriptor(new SeriesId(id)).Id.Value));
    }

    [Fact]
    public void GetOrAdd_EightThreadsBeyondLimit_OverflowTakesExactlyTheExcessPoints()
    {
        const int Limit = 100;
        const int Distinct = 250;
        const int Threads = 8;
        var registry = new SeriesRegistry(new SeriesRegistryOptions { MaxSeriesPerMetric = Limit });
        var pointsPerId = new ConcurrentDictionary<SeriesId, int>();
        var idPerSet = new ConcurrentDictionary<int, SeriesId>();

        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            var random = new Random(100 + t);
            int[] order = Enumerable.Range(0, Distinct).ToArray();
            random.Shuffle(order);
            foreach (int i in order)
            {
                SeriesId id = registry.GetOrAdd("req", LabelsFor(i));
                pointsPerId.AddOrUpdate(id, 1, (_, n) => n + 1);
                // A label set resolves the same way every time, on every thread.
                Assert.Equal(idPerSet.GetOrAdd(i, id), id);
            }
        });

        SeriesId overflow = pointsPerId.Keys.Single(id => registry.GetDescriptor(id).IsOverflow);
        Assert.Equal(Limit, pointsPerId.Count - 1);
        Assert.Equal((Distinct - Limit) * Threads, pointsPerId[overflow]);
        Assert.Equal((Distinct - Limit) * Threads, registry.GetOverflowResolutions("req"));
        Assert.All(pointsPerId.Where(p => p.Key != overflow), p => Assert.Equal(Threads, p.Value));
    }

    [Fact]
    public void GetOrAdd_ExistingSeries_AllocatesNothing()
    {
        var registry = new SeriesRegistry();
        Label[] labels = LabelsFor(7);
        SeriesId expected = registry.GetOrAdd("latency", labels);
        registry.GetOrAdd("latency", labels);

        const int Calls = 10_000;
        SeriesId id = default;
        long bytes = AllocationProbe.MeasuredBytes(() =>
        {
            for (int i = 0; i < Calls; i++)
            {
                id = registry.GetOrAdd("latency", labels);
            }
        });

        Assert.True(bytes < Calls, $"{bytes} bytes allocated over {Calls} hits");
        Assert.Equal(expected, id);
    }

    [Fact]
    public void Unlist_LookupAfterwards_FreshIdWhileTheOldOneStaysIssuedAndDescribed()
    {
        var registry = new SeriesRegistry();
        SeriesId old = registry.GetOrAdd("queue_depth", new Label("queue", "orders"));
        registry.GetOrAdd("queue_depth", new Label("queue", "billing"));

        Assert.True(registry.Unlist(old));
        Assert.False(registry.Unlist(old));
        Assert.Equal(1, registry.LiveCount);
        Assert.Equal(1, registry.GetSeriesCount("queue_depth"));
        Assert.Equal(1, registry.Reclaimed);
        Assert.Equal(0, registry.Retired);

        // The old id still belongs to the registry and still describes its series (points on their way use it).
        Assert.True(registry.Owns(old));
        Assert.Equal("orders", registry.GetDescriptor(old).Labels[0].Value);
        SeriesId fresh = registry.GetOrAdd("queue_depth", new Label("queue", "orders"));
        Assert.NotEqual(old.Value, fresh.Value);
        Assert.Equal(2, registry.LiveCount);
    }

    [Fact]
    public void Retire_OnlyUnlistedCurrentIds_IndexReusedAfterQuarantineWithNextGeneration()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var registry = new SeriesRegistry { Time = time };
        SeriesId old = registry.GetOrAdd("jobs", new Label("id", "1"));
        long quarantineEnd = time.GetTimestamp() + time.TimestampFrequency;

        Assert.Equal(-1, registry.Retire(old, quarantineEnd));
        Assert.True(registry.Unlist(old));
        Assert.Equal(old.Generation + 1, registry.Retire(old, quarantineEnd));
        Assert.Equal(-1, registry.Retire(old, quarantineEnd));
        Assert.Equal(1, registry.Retired);

        // Within the quarantine a new series takes a new index; after it, the retired one, a generation on.
        SeriesId during = registry.GetOrAdd("jobs", new Label("id", "2"));
        Assert.NotEqual(old.Value, during.Value);
        time.Advance(TimeSpan.FromSeconds(1));
        SeriesId reused = registry.GetOrAdd("jobs", new Label("id", "3"));
        Assert.Equal(old.Value, reused.Value);
        Assert.Equal(old.Generation + 1, reused.Generation);
        Assert.NotEqual(old, reused);
        Assert.Equal("3", registry.GetDescriptor(reused).Labels[0].Value);
    }

    [Fact]
    public void Unlist_OverflowSeries_Refused()
    {
        var registry = new SeriesRegistry(new SeriesRegistryOptions { MaxSeriesPerMetric = 1 });
        registry.GetOrAdd("m", new Label("a", "1"));
        SeriesId overflow = registry.GetOrAdd("m", new Label("a", "2"));
        Assert.True(registry.GetDescriptor(overflow).IsOverflow);
        Assert.False(registry.Unlist(overflow));
        Assert.Equal(0, registry.Reclaimed);
    }

    [Fact]
    public void GetDescriptor_UnknownId_Throws()
    {
        var registry = new SeriesRegistry();

        Assert.Throws<ArgumentOutOfRangeException>(() => registry.GetDescriptor(new SeriesId(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => registry.GetDescriptor(new SeriesId(-1)));
    }

    [Fact]
    public void Constructor_InvalidOptions_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SeriesRegistry(new SeriesRegistryOptions { MaxSeriesPerMetric = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SeriesRegistry(new SeriesRegistryOptions { MaxLabelsPerSeries = 129 }));
    }
}

public class SeriesRegistryCanonicalisationTests
{
    [Fact]
    public void GetOrAdd_AllValuesEmpty_SameSeriesAsNoLabels()
    {
        var registry = new SeriesRegistry();

        SeriesId none = registry.GetOrAdd("m");
        SeriesId empties = registry.GetOrAdd("m", new Label("a", ""), new Label("b", ""));

        Assert.Equal(none, empties);
        Assert.Equal(1, registry.Count);
    }

    [Fact]
    public void GetOrAdd_EmptyValueInAnyPosition_SameSeries()
    {
        var registry = new SeriesRegistry();

        SeriesId a = registry.GetOrAdd("m", new Label("z", ""), new Label("b", "2"), new Label("a", "1"));
        SeriesId b = registry.GetOrAdd("m", new Label("a", "1"), new Label("b", "2"));
        SeriesId c = registry.GetOrAdd("m", new Label("b", "2"), new Label("x", ""), new Label("a", "1"));

        Assert.Equal(a, b);
        Assert.Equal(a, c);
    }

    [Fact]
    public void TryGetOrAdd_DuplicateOfExistingSeriesLabel_StillRefused()
    {
        var registry = new SeriesRegistry();
        registry.GetOrAdd("m", new Label("a", "1"), new Label("b", "2"));

        Assert.Equal(RejectReason.DuplicateLabelName, registry.TryGetOrAdd("m", [new("a", "1"), new("a", "1")], out _));
        Assert.Equal(RejectReason.DuplicateLabelName, registry.TryGetOrAdd("m", [new("a", "1"), new("b", "2"), new("a", "1")], out _));
    }

    [Fact]
    public void GetOrAdd_SameContentDifferentStringInstances_SameSeries()
    {
        var registry = new SeriesRegistry();
        string metric1 = new(['r', 'e', 'q']);
        string metric2 = new(['r', 'e', 'q']);

        SeriesId a = registry.GetOrAdd(metric1, new Label(new string(['k']), new string(['v', '1'])));
        SeriesId b = registry.GetOrAdd(metric2, new Label("k", "v1"));

        Assert.Equal(a, b);
    }

    [Fact]
    public void GetOrAdd_ValuesSwappedBetweenNames_DistinctSeries()
    {
        var registry = new SeriesRegistry();

        SeriesId a = registry.GetOrAdd("m", new Label("a", "1"), new Label("b", "2"));
        SeriesId b = registry.GetOrAdd("m", new Label("a", "2"), new Label("b", "1"));

        Assert.NotEqual(a, b);
    }
}
