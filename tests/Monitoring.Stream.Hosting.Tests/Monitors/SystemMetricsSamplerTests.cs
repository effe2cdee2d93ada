using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Monitors;

public class SystemMetricsSamplerTests
{
    private const long T0 = EngineFixture.T0;

    private static void WriteProc(string root, string cpuLine, string? meminfo, long received, long sent)
    {
        Directory.CreateDirectory(Path.Combine(root, "net"));
        File.WriteAllText(Path.Combine(root, "stat"), cpuLine + "\ncpu0 1 2 3 4 5 6 7 8 9 10\n");
        if (meminfo is not null)
        {
            File.WriteAllText(Path.Combine(root, "meminfo"), meminfo);
        }

        File.WriteAllText(Path.Combine(root, "net", "dev"),
            "Inter-|   Receive                                                |  Transmit\n" +
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
            $"  eth0: {received} 10 0 0 0 0 0 0 {sent} 5 0 0 0 0 0 0\n");
    }

    [Fact]
    public async Task Sample_KnownProcFiles_ExactFiguresAndFirstRatesAbsent()
    {
        using var proc = new TempDirectory();
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var sampler = new SystemMetricsSampler(engine.Collector, new SystemMetricsOptions { ProcRoot = proc.Path }, engine.Time, start: false);
        WriteProc(proc.Path, "cpu  100 0 100 800 0 0 0 0 0 0", "MemTotal:   1000 kB\nMemFree:   100 kB\nMemAvailable:    250 kB\n", 1000, 500);

        SystemSample first = sampler.Sample();
        WriteProc(proc.Path, "cpu  200 0 150 840 10 0 0 0 0 0", "MemTotal:   1000 kB\nMemAvailable:    500 kB\n", 4000, 2000);
        engine.Time.Advance(TimeSpan.FromSeconds(2));
        SystemSample second = sampler.Sample();
        await engine.StopAsync();

        Assert.Null(first.SystemCpuPercent);
        Assert.Null(first.Network["eth0"].ReceivedPerSecond);
        Assert.Equal(75.0, first.MemoryUsedPercent);
        Assert.Equal(1_024_000.0, first.MemoryTotalBytes);
        Assert.Equal(768_000.0, first.MemoryUsedBytes);
        // busy 350 - 200 = 150 of total 1200 - 1000 = 200 jiffies (iowait counts as idle).
        Assert.Equal(75.0, second.SystemCpuPercent);
        Assert.Equal(50.0, second.MemoryUsedPercent);
        Assert.Equal((4000.0, 2000.0, 1500.0, 750.0), second.Network["eth0"]);
        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        var cpu = engine.Queries.GetStatistics("system_cpu_usage_percent", LabelSet.Empty, from, from.AddMinutes(1));
        Assert.Equal(1, cpu!.Count);
        Assert.Equal(75.0, cpu.Last);
        var rate = engine.Queries.GetStatistics("system_network_received_bytes_per_second", LabelSet.Create(new Label("interface", "eth0")), from, from.AddMinutes(1));
        Assert.Equal(1, rate!.Count);
        Assert.Equal(1500.0, rate.Last);
    }

    [Fact]
    public async Task Sample_NoProcFileSystem_LinuxFiguresAbsentNotZero()
    {
        using var empty = new TempDirectory();
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var sampler = new SystemMetricsSampler(engine.Collector, new SystemMetricsOptions { ProcRoot = empty.Path }, engine.Time, start: false);

        sampler.Sample();
        engine.Time.Advance(TimeSpan.FromSeconds(1));
        SystemSample s = sampler.Sample();
        await engine.StopAsync();

        Assert.Null(s.SystemCpuPercent);
        Assert.Null(s.MemoryTotalBytes);
        Assert.Null(s.MemoryUsedPercent);
        Assert.Empty(s.Network);
        Assert.True(s.ProcessWorkingSetBytes > 0);
        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        Assert.Null(engine.Queries.GetStatistics("system_memory_usage_percent", LabelSet.Empty, from, from.AddMinutes(1)));
        Assert.NotNull(engine.Queries.GetStatistics("process_working_set_bytes", LabelSet.Empty, from, from.AddMinutes(1)));
    }

    private static long[] ReadCpu() =>
        [.. File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8).Select(v => long.Parse(v, CultureInfo.InvariantCulture))];

    private static long ProcessJiffies()
    {
        string stat = File.ReadAllText("/proc/self/stat");
        string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
        return long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
    }

    private static long MemInfoKb(string field) =>
        long.Parse(File.ReadLines("/proc/meminfo").First(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    [Fact]
    public async Task Sample_RealProc_AgreesWithProcReadInTheTest()
    {
        if (!File.Exists("/proc/stat"))
        {
            Assert.Fail("This test reads Linux /proc; CI runs on Linux.");
        }

        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var sampler = new SystemMetricsSampler(engine.Collector, new SystemMetricsOptions(), TimeProvider.System, start: false);
        // A first sample outside the brackets: its one-time cost (JIT, first reads of /proc) would otherwise sit in
        // the test's interval and not in the sampler's, and on a busy CI machine it moved the process figure by
        // more than the tolerance.
        sampler.Sample();
        long[] cpuBefore = ReadCpu();
        long jiffiesBefore = ProcessJiffies();
        var wall = Stopwatch.StartNew();
        sampler.Sample();
        // Half a second of one busy thread gives the CPU figures something to measure.
        var spin = Stopwatch.StartNew();
        while (spin.ElapsedMilliseconds < 500)
        {
            Thread.SpinWait(1000);
        }

        SystemSample s = sampler.Sample();
        double seconds = wall.Elapsed.TotalSeconds;
        long[] cpuAfter = ReadCpu();
        long jiffiesAfter = ProcessJiffies();

        // CPU: the test's reads bracket the sampler's, so the figures differ by what happened in the
        // few ms between them: 10 percentage points, more than enough on an idle or a busy machine.
        long busy = cpuAfter.Sum() - cpuAfter[3] - cpuAfter[4] - (cpuBefore.Sum() - cpuBefore[3] - cpuBefore[4]);
        double expectedSystem = 100.0 * busy / (cpuAfter.Sum() - cpuBefore.Sum());
        Assert.InRange(s.SystemCpuPercent!.Value, expectedSystem - 10, expectedSystem + 10);
        double expectedProcess = 100.0 * (jiffiesAfter - jiffiesBefore) / 100.0 / (seconds * Environment.ProcessorCount);
        Assert.InRange(s.ProcessCpuPercent!.Value, expectedProcess - 10, expectedProcess + 10);
        // Memory: the total is exact; used (total - available) within 1 % of the total.
        Assert.Equal(MemInfoKb("MemTotal") * 1024.0, s.MemoryTotalBytes);
        double expectedUsed = (MemInfoKb("MemTotal") - MemInfoKb("MemAvailable")) * 1024.0;
        Assert.InRange(s.MemoryUsedBytes!.Value, expectedUsed - (0.01 * s.MemoryTotalBytes!.Value), expectedUsed + (0.01 * s.MemoryTotalBytes.Value));
        // Network: every interface of /proc/net/dev, totals no greater than a read taken after.
        string[] interfaces = [.. File.ReadLines("/proc/net/dev").Skip(2).Select(l => l[..l.IndexOf(':', StringComparison.Ordinal)].Trim())];
        Assert.Equal(interfaces.Order(), s.Network.Keys.Order());
        // Disk: / as statvfs reports it through df, within 1 % of its size.
        var df = Process.Start(new ProcessStartInfo("df", "-B1 --output=size,used /") { RedirectStandardOutput = true })!;
        string[] dfFields = (await df.StandardOutput.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        await df.WaitForExitAsync();
        double dfSize = double.Parse(dfFields[0], CultureInfo.InvariantCulture), dfUsed = double.Parse(dfFields[1], CultureInfo.InvariantCulture);
        Assert.Equal(dfSize, s.Disks["/"].TotalBytes);
        Assert.InRange(s.Disks["/"].UsedBytes, dfUsed - (0.01 * dfSize), dfUsed + (0.01 * dfSize));
    }
}
