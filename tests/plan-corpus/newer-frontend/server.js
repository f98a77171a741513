console.log("web")
