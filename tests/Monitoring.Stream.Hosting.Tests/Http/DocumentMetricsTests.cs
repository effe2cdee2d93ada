using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Http;

public class DocumentMetricsTests
{
    private const long T0 = EngineFixture.T0;

    [Fact]
    public async Task MeasureAsync_OkAndFailed_CountsSizesAndStatusByType()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        var documents = new DocumentMetrics(engine.Collector);

        Assert.Equal(3, await documents.MeasureAsync("invoice", 1000, () => Task.FromResult(3)));
        await documents.MeasureAsync("invoice", 3000, () => Task.FromResult(4));
        await Assert.ThrowsAsync<InvalidDataException>(() => documents.MeasureAsync<int>("invoice", 50, () => throw new InvalidDataException("bad pdf")));
        documents.Record("receipt", "ok", TimeSpan.FromMilliseconds(20), 700);
        await engine.StopAsync();

        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        var ok = engine.Queries.GetStatistics(DocumentMetrics.SizeMetric, LabelSet.Create(new Label("type", "invoice"), new Label("status", "ok")), from, from.AddMinutes(1));
        var failed = engine.Queries.GetStatistics(DocumentMetrics.DurationMetric, LabelSet.Create(new Label("type", "invoice"), new Label("status", "failed")), from, from.AddMinutes(1));
        var receipt = engine.Queries.GetStatistics(DocumentMetrics.DurationMetric, LabelSet.Create(new Label("type", "receipt"), new Label("status", "ok")), from, from.AddMinutes(1));
        Assert.Equal(2, ok!.Count);
        Assert.Equal(4000, ok.Sum);
        Assert.Equal(1, failed!.Count);
        Assert.Equal(0.02, receipt!.Sum, 1e-12);
    }
}
