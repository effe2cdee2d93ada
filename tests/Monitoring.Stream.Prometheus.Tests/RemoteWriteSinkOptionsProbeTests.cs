namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>The remote-write sink's request timeout is refused up front, naming it, when no timer could enforce it.</summary>
public class RemoteWriteSinkOptionsProbeTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(2 * 24 * 60 * 60 * 1000.0)]
    [InlineData(100 * 24 * 60 * 60 * 1000.0)]
    public void Constructor_TimeoutNotPositiveOrBeyondADay_RefusedNamingTimeout(double milliseconds)
    {
        var options = new RemoteWriteSinkOptions { Endpoint = new Uri("http://127.0.0.1:1/api/v1/write"), Timeout = TimeSpan.FromMilliseconds(milliseconds) };
        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(() => new RemoteWriteSink(options));
        Assert.Equal(nameof(RemoteWriteSinkOptions.Timeout), e.ParamName);
    }

    [Fact]
    public async Task Constructor_TimeoutOfOneDay_Accepted()
    {
        var options = new RemoteWriteSinkOptions { Endpoint = new Uri("http://127.0.0.1:1/api/v1/write"), Timeout = TimeSpan.FromDays(1) };
        await using var sink = new RemoteWriteSink(options);
        Assert.Equal("remote-write", sink.Name);
    }
}
