using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Health;

public class HealthMetricsPublisherTests
{
    private const long T0 = EngineFixture.T0;

    private static HealthCheckService Build(Action<IHealthChecksBuilder> add)
    {
        var services = new ServiceCollection().AddLogging();
        add(services.AddHealthChecks());
        return services.BuildServiceProvider().GetRequiredService<HealthCheckService>();
    }

    [Fact]
    public async Task PublishAsync_DegradedAndThrowingChecks_WorstWinsAndEachResultIsAMetric()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        var publisher = new HealthMetricsPublisher(engine.Collector);
        HealthCheckService degradedOnly = Build(b => b
            .AddCheck("ok", () => HealthCheckResult.Healthy())
            .AddCheck("slow-db", () => HealthCheckResult.Degraded("p99 above 1 s")));
        HealthCheckService withThrowing = Build(b => b
            .AddCheck("ok", () => HealthCheckResult.Healthy())
            .AddCheck("slow-db", () => HealthCheckResult.Degraded("p99 above 1 s"))
            .AddCheck("broken", () => throw new InvalidOperationException("connection refused")));

        HealthReport degraded = await degradedOnly.CheckHealthAsync();
        HealthReport unhealthy = await withThrowing.CheckHealthAsync();
        await publisher.PublishAsync(unhealthy, CancellationToken.None);
        await engine.StopAsync();

        Assert.Equal(HealthStatus.Degraded, degraded.Status);
        Assert.Equal(HealthStatus.Unhealthy, unhealthy.Status);
        Assert.Equal("connection refused", unhealthy.Entries["broken"].Exception?.Message);
        Assert.Same(unhealthy, publisher.LastReport);
        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        double Status(string check) => engine.Queries.GetStatistics(HealthMetricsPublisher.StatusMetric,
            LabelSet.Create(new Label("check", check)), from, from.AddMinutes(1))!.Last;
        Assert.Equal(0, Status("broken"));
        Assert.Equal(1, Status("slow-db"));
        Assert.Equal(2, Status("ok"));
        Assert.Equal(0, Status("overall"));
    }

    [Fact]
    public async Task CheckHealth_CheckPastItsTimeout_UnhealthyWithTheTimeout()
    {
        HealthCheckService service = Build(b => b.AddAsyncCheck("hangs", async ct =>
        {
            await Task.Delay(Timeout.Infinite, ct);
            return HealthCheckResult.Healthy();
        }, timeout: TimeSpan.FromMilliseconds(100)));

        HealthReport report = await service.CheckHealthAsync().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(HealthStatus.Unhealthy, report.Status);
        Assert.Contains("timeout", report.Entries["hangs"].Description, StringComparison.OrdinalIgnoreCase);
    }
}
