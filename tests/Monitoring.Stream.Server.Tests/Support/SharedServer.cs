using System.Net.Http.Headers;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>
/// One service process shared by the API tests: short windows (2 s, lateness 3 s) so that ingested points become
/// queryable within seconds, a bearer token, small body limits and a short slow-body grace period.
/// </summary>
public sealed class SharedServer : IAsyncLifetime
{
    /// <summary>The token the service requires.</summary>
    public const string Token = "test-token-0123456789abcdef";

    /// <summary>The body limit as sent.</summary>
    public const int MaxBodyBytes = 1 << 20;

    /// <summary>The body limit after decompression.</summary>
    public const int MaxDecompressedBytes = 4 << 20;

    private ServerProcess? _server;

    internal ServerProcess Server => _server!;

    /// <summary>A client that sends the token.</summary>
    public HttpClient Client { get; private set; } = null!;

    /// <summary>A client that sends no token.</summary>
    public HttpClient Anonymous { get; private set; } = null!;

    /// <summary>The service's address.</summary>
    public Uri Address => Server.Address;

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(["--api-token", Token], new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:02",
            ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:03",
            ["MONITORING_STREAM__Pipeline__SourceIdleTimeout"] = "00:00:02",
            ["MONITORING_STREAM__Pipeline__ShardCount"] = "2",
            ["MONITORING_STREAM__Server__MaxRequestBodyBytes"] = MaxBodyBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["MONITORING_STREAM__Server__MaxDecompressedBodyBytes"] = MaxDecompressedBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["MONITORING_STREAM__Server__RequestBodyGracePeriod"] = "00:00:02",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        Client = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(30) };
        Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        Anonymous = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        Client?.Dispose();
        Anonymous?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
