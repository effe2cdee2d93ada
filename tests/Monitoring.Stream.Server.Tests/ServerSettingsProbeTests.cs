using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// The service's settings (docs/configuration.md, <c>MonitoringStream:Server</c>): the remote-write request timeout is a
/// setting, and every timeout is bounded so that it can never fail a request or a stop at run time.
/// </summary>
public class ServerSettingsProbeTests
{
    private static string? Failure(ServerSettings settings, string setting) =>
        settings.Validate().SingleOrDefault(f => f.StartsWith($"MonitoringStream:Server:{setting} = ", StringComparison.Ordinal));

    [Fact]
    public void RemoteWriteOptions_TimeoutSetting_ReachesTheSink()
    {
        var settings = new ServerSettings { RemoteWriteUrl = "http://127.0.0.1:1/api/v1/write", RemoteWriteTimeout = TimeSpan.FromMilliseconds(1500) };
        Assert.Empty(settings.Validate());
        Prometheus.RemoteWriteSinkOptions options = RunCommand.RemoteWriteOptions(settings);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), options.Timeout);
        Assert.Equal(new Uri("http://127.0.0.1:1/api/v1/write"), options.Endpoint);
        Assert.Equal(TimeSpan.FromSeconds(30), new ServerSettings().RemoteWriteTimeout);
    }

    [Theory]
    [InlineData("00:00:00")]
    [InlineData("-00:00:01")]
    [InlineData("-00:00:00.001")]
    [InlineData("1.00:00:00.001")]
    [InlineData("10675199.02:48:05.4775807")]
    public void Validate_RemoteWriteTimeoutNotPositiveOrBeyondADay_RefusedNamingIt(string value)
    {
        var settings = new ServerSettings { RemoteWriteUrl = "http://127.0.0.1:1/api/v1/write", RemoteWriteTimeout = TimeSpan.Parse(value, System.Globalization.CultureInfo.InvariantCulture) };
        string? failure = Failure(settings, "RemoteWriteTimeout");
        Assert.NotNull(failure);
        Assert.Contains("must be positive and at most 1 day", failure, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("IngestQueueTimeout")]
    [InlineData("RequestBodyGracePeriod")]
    [InlineData("RequestHeadersTimeout")]
    public void Validate_TimeoutBeyondADay_RefusedNamingIt(string setting)
    {
        // IngestQueueTimeout at 100 days used to start, then fail every request that had to wait for a slot
        // (a semaphore cannot wait beyond about 24.8 days).
        var settings = new ServerSettings();
        typeof(ServerSettings).GetProperty(setting)!.SetValue(settings, TimeSpan.FromDays(100));
        Assert.NotNull(Failure(settings, setting));
        typeof(ServerSettings).GetProperty(setting)!.SetValue(settings, TimeSpan.FromDays(1));
        Assert.Null(Failure(settings, setting));
    }

    [Theory]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NaN)]
    [InlineData(0)]
    public void Validate_MinRequestBodyRateNotPositiveAndFinite_Refused(double rate)
    {
        var settings = new ServerSettings { MinRequestBodyBytesPerSecond = rate };
        Assert.NotNull(Failure(settings, "MinRequestBodyBytesPerSecond"));
    }

    [Fact]
    public async Task Run_EngineSettingsBeyondTheirBounds_Exit2NamingEachWithoutAStackTrace()
    {
        // Each of these used to escape as an unhandled exception with a stack trace (exit 1), or, for the shutdown
        // timeout, to start and then crash on SIGTERM before the open windows reached the store.
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://127.0.0.1:0"], new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Pipeline__ShutdownTimeout"] = "100.00:00:00",
            ["MONITORING_STREAM__Pipeline__MaxFutureSkew"] = "4000.00:00:00",
            ["MONITORING_STREAM__Pipeline__TickInterval"] = "02:00:00",
            ["MONITORING_STREAM__Pipeline__Registry__MaxLabelsPerSeries"] = "200",
            ["MONITORING_STREAM__SystemMetrics__Interval"] = "100.00:00:00",
        });
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        string output = server.Output;
        Assert.True(exit == 2, $"exit code {exit}. Output:\n{output}");
        foreach (string setting in new[] { "Pipeline:ShutdownTimeout", "Pipeline:MaxFutureSkew", "Pipeline:TickInterval", "Pipeline:Registry:MaxLabelsPerSeries", "SystemMetrics:Interval" })
        {
            Assert.Contains($"MonitoringStream:{setting} = ", output, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_RemoteWriteTimeoutZero_Exit2NamingTheSetting()
    {
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://127.0.0.1:0", "--remote-write-url", "http://127.0.0.1:1/api/v1/write"],
            new Dictionary<string, string> { ["MONITORING_STREAM__Server__RemoteWriteTimeout"] = "00:00:00" });
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 2, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains("MonitoringStream:Server:RemoteWriteTimeout = 00:00:00: must be positive and at most 1 day", server.Output, StringComparison.Ordinal);
    }
}
