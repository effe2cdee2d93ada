using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// The performance monitor of docs/sdk.md ("Performance monitor": "A figure the platform does not offer is absent — not
/// written — never zero") fed a /proc it cannot make sense of: counters that did not move, a zero total, garbage,
/// counters that went backwards. No figure may come out as NaN, infinite or negative, and the sampler's timer must survive.
/// </summary>
public class SystemMonitorBlackBoxTests
{
    private const long T0 = EngineFixture.T0;

    private static void WriteProc(string root, string stat, string meminfo, string netDevLine)
    {
        Directory.CreateDirectory(Path.Combine(root, "net"));
        File.WriteAllText(Path.Combine(root, "stat"), stat);
        File.WriteAllText(Path.Combine(root, "meminfo"), meminfo);
        File.WriteAllText(Path.Combine(root, "net", "dev"),
            "Inter-|   Receive                                                |  Transmit\n" +
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
            netDevLine + "\n");
    }

    private static void AssertSane(double? figure, string what)
    {
        Assert.True(figure is null || (double.IsFinite(figure.Value) && figure.Value >= 0), $"{what} = {figure}: a figure is a finite non-negative number or absent");
    }

    private static void AssertSane(SystemSample s)
    {
        AssertSane(s.SystemCpuPercent, "system cpu");
        AssertSane(s.ProcessCpuPercent, "process cpu");
        AssertSane(s.MemoryTotalBytes, "memory total");
        AssertSane(s.MemoryUsedBytes, "memory used");
        AssertSane(s.MemoryUsedPercent, "memory percent");
        foreach (KeyValuePair<string, (double ReceivedBytes, double SentBytes, double? ReceivedPerSecond, double? SentPerSecond)> n in s.Network)
        {
            AssertSane(n.Value.ReceivedBytes, n.Key + " received");
            AssertSane(n.Value.SentBytes, n.Key + " sent");
            AssertSane(n.Value.ReceivedPerSecond, n.Key + " received/s");
            AssertSane(n.Value.SentPerSecond, n.Key + " sent/s");
        }
    }

    [Fact]
    public async Task Sample_CountersThatDidNotMoveAndAZeroMemoryTotal_FiguresAbsentNeverNaN()
    {
        using var proc = new TempDirectory();
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var sampler = new SystemMetricsSampler(engine.Collector, new SystemMetricsOptions { ProcRoot = proc.Path, Mounts = { "/" } }, engine.Time, start: false);
        WriteProc(proc.Path, "cpu  100 0 100 800 0 0 0 0 0 0\n", "MemTotal:   0 kB\nMemAvailable:    0 kB\n", "  eth0: 1000 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0");

        SystemSample first = sampler.Sample();
        engine.Time.Advance(TimeSpan.FromSeconds(2));
        SystemSample second = sampler.Sample();   // the same jiffies: 0 of 0 busy
        await engine.StopAsync();

        AssertSane(first);
        AssertSane(second);
        Assert.Null(second.SystemCpuPercent);
        Assert.Null(second.MemoryUsedPercent);
        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        Assert.Null(engine.Queries.GetStatistics("system_cpu_usage_percent", LabelSet.Empty, from, from.AddMinutes(1)));
        Assert.Null(engine.Queries.GetStatistics("system_memory_usage_percent", LabelSet.Empty, from, from.AddMinutes(1)));
        Assert.Equal(0, engine.Pipeline.GetMetrics().Rejected);   // nothing NaN was offered and refused either
    }

    [Fact]
    public async Task Sample_GarbageAndCountersGoingBackwards_NeverThrowsNoNegativeRateTimerSurvives()
    {
        using var proc = new TempDirectory();
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var sampler = new SystemMetricsSampler(engine.Collector, new SystemMetricsOptions { ProcRoot = proc.Path, Interval = TimeSpan.FromSeconds(5), Mounts = { "/" } }, engine.Time, start: true);
        WriteProc(proc.Path, "cpu  200 0 150 840 10 0 0 0 0 0\n", "MemTotal:   1000 kB\nMemAvailable:    500 kB\n", "  eth0: 4000 10 0 0 0 0 0 0 2000 5 0 0 0 0 0 0");

        Exception? onTimer = Record.Exception(() => engine.Time.Advance(TimeSpan.FromSeconds(5)));
        // The interface was reset and the CPU counters read back lower (a container's /proc after a restore).
        WriteProc(proc.Path, "cpu  100 0 100 800 0 0 0 0 0 0\n", "MemTotal:   1000 kB\nMemAvailable:    500 kB\n", "  eth0: 10 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0");
        Exception? onTimer2 = Record.Exception(() => engine.Time.Advance(TimeSpan.FromSeconds(5)));
        SystemSample? backwards = sampler.LastSample;
        WriteProc(proc.Path, "cpu  garbage\n", "MemTotal:   lots\nMemAvailable:\n", "  eth0: x y z");
        Exception? onTimer3 = Record.Exception(() => engine.Time.Advance(TimeSpan.FromSeconds(5)));
        SystemSample? garbage = sampler.LastSample;
        File.Delete(Path.Combine(proc.Path, "stat"));
        Exception? onTimer4 = Record.Exception(() => engine.Time.Advance(TimeSpan.FromSeconds(5)));
        await engine.StopAsync();

        Assert.Null(onTimer);
        Assert.Null(onTimer2);
        Assert.Null(onTimer3);
        Assert.Null(onTimer4);
        Assert.NotNull(backwards);
        AssertSane(backwards);
        Assert.NotNull(garbage);
        AssertSane(garbage);
        Assert.Null(garbage.MemoryTotalBytes);
        Assert.Null(garbage.SystemCpuPercent);
        Assert.True(garbage.ProcessWorkingSetBytes > 0, "the process figures, which .NET offers everywhere, are still there");
        Assert.Equal(4, sampler.LastSample is null ? 0 : engine.Queries.GetStatistics("process_working_set_bytes", LabelSet.Empty,
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 60_000))!.Count);
        MetricStatistics? rate = engine.Queries.GetStatistics("system_network_received_bytes_per_second", LabelSet.Create(new Label("interface", "eth0")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 60_000));
        Assert.True(rate is null || rate.Min >= 0, $"a negative rate was written: min {rate?.Min}");
    }
}
