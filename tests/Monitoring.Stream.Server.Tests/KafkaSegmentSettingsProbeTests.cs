using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// <c>Kafka:SegmentInterval</c> at its limits (docs/configuration.md: <c>00:00:00</c> off, at most 1 day), through the
/// executable: a value out of range is refused at start-up with a message naming the setting, never at run time.
/// </summary>
public class KafkaSegmentSettingsProbeTests
{
    [Theory]
    [InlineData("-00:00:01")]
    [InlineData("-00:00:00.001")]
    [InlineData("2.00:00:00")]
    [InlineData("1.00:00:00.001")]
    public async Task Run_KafkaSegmentIntervalOutOfRange_Exit2NamingTheSetting(string value)
    {
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://127.0.0.1:0", "--kafka-mock"], new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Server__Kafka__SegmentInterval"] = value,
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        string output = server.Output;
        Assert.True(exit == 2, $"exit code {exit}. Output:\n{output}");
        Assert.Contains("MonitoringStream:Server:Kafka:SegmentInterval = ", output, StringComparison.Ordinal);
        Assert.Contains("must be from 0 (off) to 1 day", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("00:00:00")]
    [InlineData("00:00:00.001")]
    [InlineData("1.00:00:00")]
    public async Task Run_KafkaSegmentIntervalOffOrAtItsLimits_StartsAndStopsCleanly(string value)
    {
        await using ServerProcess server = await ServerProcess.StartAsync(["--kafka-mock"], new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Server__Kafka__SegmentInterval"] = value,
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        Assert.DoesNotContain("SegmentInterval", server.Output, StringComparison.Ordinal);
        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 0, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains("stopped (Stopped)", server.Output, StringComparison.Ordinal);
    }
}
