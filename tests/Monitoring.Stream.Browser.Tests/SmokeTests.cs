using Microsoft.Playwright;

namespace Monitoring.Stream.Browser.Tests;

public sealed class SmokeTests
{
    [Fact]
    public async Task Launch_DebianChromium_Works()
    {
        using IPlaywright pw = await Playwright.CreateAsync();
        await using IBrowser browser = await pw.Chromium.LaunchAsync(new() { ExecutablePath = "/usr/bin/chromium", Headless = true });
        IPage page = await browser.NewPageAsync();
        await page.SetContentAsync("<h1>hi</h1>");
        Assert.Equal("hi", await page.InnerTextAsync("h1"));
    }
}
